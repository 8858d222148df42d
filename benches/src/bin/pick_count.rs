//! Picks a member `N` times (round robin and power of two choices over 16 members, and the
//! sticky route lookup), for counting instructions per pick under callgrind: CI runs it with
//! two counts and divides the difference (`scripts/instructions-check.sh`), so start-up
//! cancels out and the figure repeats on any machine.
//!
//! Usage: `pick_count STRATEGY N` with STRATEGY `round-robin` or `p2c`.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Duration;

use benches::{pick_serial, registry};
use tower_balancer::outcome::Outcome;
use tower_balancer::strategy::{PickContext, Picker, PowerOfTwo, RoundRobin, Strategy, Tried};

fn run<S: Strategy>(strategy: S, n: u64) -> u64 {
    let r = registry(16);
    for m in r.snapshot().members() {
        m.stats().record(&Outcome::Success {
            latency: Duration::from_micros(200 + m.serial() % 100),
        });
    }
    let p = Picker::new(&r, strategy);
    let tried = Tried::new();
    let mut sum = 0u64;
    let mut k = 0u64;
    for _ in 0..n {
        k = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let cx = PickContext::new(Some(k), &tried);
        sum = sum.wrapping_add(black_box(pick_serial(&r, &p, &cx)).unwrap_or(0));
    }
    sum
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(strategy), Some(Ok(n))) = (args.get(1), args.get(2).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: pick_count round-robin|p2c N");
        return ExitCode::from(2);
    };
    let sum = match strategy.as_str() {
        "round-robin" => run(RoundRobin::new(), n),
        "p2c" => run(PowerOfTwo::new(), n),
        other => {
            eprintln!("unknown strategy {other:?}: round-robin or p2c");
            return ExitCode::from(2);
        }
    };
    println!("{n} picks, checksum {sum}");
    ExitCode::SUCCESS
}
