#!/usr/bin/env bash
# The is_cluster login flow in a real browser: headless Chromium (Debian's `chromium`)
# driven by playwright-core opens https://wso2.com:PORT/carbon/ through the balancer, signs
# in as admin, reloads the home page and checks the session stayed on one node; then the
# manager page. Screenshots go to the scratch directory it prints.
#
#   bash scripts/browser-login.sh            # installs chromium (apt) and playwright-core (npm) if missing
#
# wso2.com is mapped to 127.0.0.1 inside Chromium (--host-resolver-rules), and only the
# balancer's own certificate is trusted (--ignore-certificate-errors-spki-list with its
# SPKI hash), so no system file or trust store is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${PORT:-18443}"
admin="${ADMIN_PORT:-19000}"
scratch="${SCRATCH:-$(mktemp -d)}"
mkdir -p "$scratch"
echo "scratch directory: $scratch"

if ! command -v chromium >/dev/null; then
  apt-get update && apt-get install -y chromium
fi
if [ ! -d "$scratch/node_modules/playwright-core" ]; then
  (cd "$scratch" && npm install --silent --no-audit --no-fund playwright-core >/dev/null)
fi

cargo build -q --example is_cluster
log="$scratch/is_cluster.log"
cargo run -q --example is_cluster -- --certs "$scratch/certs" \
  --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" >"$log" 2>&1 &
cluster=$!
trap 'kill $cluster 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  grep -q "The cluster is up" "$log" && break
  if ! kill -0 $cluster 2>/dev/null; then cat "$log"; exit 1; fi
  sleep 0.5
done
grep -q "The cluster is up" "$log" || { cat "$log"; echo "the cluster did not come up"; exit 1; }

spki="$(openssl x509 -in "$scratch/certs/wso2.com.pem" -pubkey -noout \
  | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"

cat >"$scratch/login.mjs" <<'JS'
import { chromium } from 'playwright-core';
const [port, admin, spki, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--host-resolver-rules=MAP wso2.com 127.0.0.1',
         `--ignore-certificate-errors-spki-list=${spki}`],
});
const page = await (await browser.newContext()).newPage();
const fail = (m) => { console.error('FAIL: ' + m); process.exit(1); };
await page.goto(`https://wso2.com:${port}/carbon/`);
if (!page.url().endsWith('/carbon/admin/login.jsp')) fail('not redirected to the login page: ' + page.url());
if (!page.url().startsWith(`https://wso2.com:${port}/`)) fail('left the balancer: ' + page.url());
await page.fill('#username', 'admin');
await page.fill('#password', 'admin');
await Promise.all([page.waitForNavigation(), page.click('#signin')]);
const welcome = await page.textContent('#welcome');
if (!welcome || !welcome.includes('admin')) fail('not signed in: ' + page.url());
const node = await page.textContent('#node b');
const session = await page.textContent('#session');
console.log(`signed in on ${node}, session ${session}`);
await page.screenshot({ path: `${out}/login.png` });
for (let i = 0; i < 5; i++) {
  await Promise.all([page.waitForNavigation(), page.click('#again')]);
  const n = await page.textContent('#node b');
  const s = await page.textContent('#session');
  if (n !== node || s !== session) fail(`page ${i + 1} moved to ${n} / ${s}`);
}
console.log(`5 more pages: all on ${node}, same session`);
const cookies = await page.context().cookies();
console.log('cookies: ' + cookies.map((c) => `${c.name} (secure=${c.secure}, httpOnly=${c.httpOnly})`).join(', '));
await page.goto(`http://127.0.0.1:${admin}/balancer-manager`);
await page.screenshot({ path: `${out}/manager.png`, fullPage: true });
console.log('ok');
await browser.close();
JS
(cd "$scratch" && node login.mjs "$port" "$admin" "$spki" "$scratch")
echo "screenshots: $scratch/login.png $scratch/manager.png"
