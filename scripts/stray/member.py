# member on 18101: see run.sh
# member on 18101: echoes the path; /bad204 answers 204 and 5 ms later a stray 2nd response
import socket, threading, time
def h(c):
    f = c.makefile('rb')
    while True:
        line = f.readline()
        if not line: return
        while f.readline() not in (b'\r\n', b''): pass
        p = line.split()[1]
        if p.startswith(b'/bad204'):
            c.sendall(b'HTTP/1.1 204 No Content\r\n\r\n'); time.sleep(0.005)
            c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nSMUGGLED\n')
        else:
            c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % len(p) + p)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 18101)); s.listen(128)
while True: threading.Thread(target=h, args=(s.accept()[0],), daemon=True).start()
