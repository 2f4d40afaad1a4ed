package gatewaybench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// The load generator speaks HTTP/1.1 itself over kept-alive connections:
// each request is one write of bytes laid out once per customer plus its
// Idempotency-Key, each answer a status line, headers up to Content-Length
// and the body skipped. net/http's client costs several times more CPU per
// request, and on a shared machine every microsecond the generator spends
// is one the server under test does not get. The server is net/http.

// wireConn is one kept-alive connection.
type wireConn struct {
	c  net.Conn
	rd *bufio.Reader
	wr []byte
}

// wirePool hands out connections to addr, at most max at once.
type wirePool struct {
	addr string
	free chan *wireConn
	sem  chan struct{}
}

func newWirePool(addr string, max int) *wirePool {
	return &wirePool{addr: addr, free: make(chan *wireConn, max), sem: make(chan struct{}, max)}
}

func (p *wirePool) get(ctx context.Context) (*wireConn, error) {
	select {
	case c := <-p.free:
		return c, nil
	default:
	}
	select {
	case c := <-p.free:
		return c, nil
	case p.sem <- struct{}{}:
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", p.addr)
		if err != nil {
			<-p.sem
			return nil, err
		}
		return &wireConn{c: c, rd: bufio.NewReaderSize(c, 4096)}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *wirePool) put(c *wireConn, broken bool) {
	if broken {
		_ = c.c.Close()
		<-p.sem
		return
	}
	p.free <- c
}

func (p *wirePool) close() {
	for {
		select {
		case c := <-p.free:
			_ = c.c.Close()
		default:
			return
		}
	}
}

var errBadAnswer = errors.New("malformed HTTP answer")

// do sends head (everything up to the Idempotency-Key value), key and tail
// (the rest of the headers and the body) and returns the status.
func (c *wireConn) do(head []byte, key string, tail []byte, timeout time.Duration) (int, error) {
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	c.wr = append(append(append(c.wr[:0], head...), key...), tail...)
	if _, err := c.c.Write(c.wr); err != nil {
		return 0, err
	}
	line, err := c.rd.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, errBadAnswer
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, errBadAnswer
	}
	length := -1
	for {
		h, err := c.rd.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		if len(h) > 16 && bytes.EqualFold(h[:15], []byte("Content-Length:")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(h[15:]))); err != nil {
				return 0, errBadAnswer
			}
		}
	}
	if length < 0 {
		return 0, fmt.Errorf("%w: no Content-Length", errBadAnswer)
	}
	if _, err := c.rd.Discard(length); err != nil {
		return 0, err
	}
	return code, nil
}

// request is a customer's subscribe laid out around its Idempotency-Key.
type request struct {
	head, tail []byte
}

func newRequest(host, path, token, body string) request {
	head := "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nAuthorization: " +
		token + "\r\nIdempotency-Key: "
	tail := "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	return request{head: []byte(head), tail: []byte(tail)}
}

// wireLoader is loader's transport.
type wireLoader struct {
	pool    *wirePool
	timeout time.Duration
}

// send sends a request and returns the answer's status and how long the
// answer took on the wire (from writing the request to reading the answer,
// the wait for a connection excluded). A connection the server closed while
// idle fails the first attempt; the request is sent again once on another
// (safe: it carries its Idempotency-Key).
func (w *wireLoader) send(ctx context.Context, r request, key string) (int, time.Duration, error) {
	var err error
	for range 2 {
		var c *wireConn
		if c, err = w.pool.get(ctx); err != nil {
			return 0, 0, err
		}
		var code int
		t0 := time.Now()
		code, err = c.do(r.head, key, r.tail, w.timeout)
		wire := time.Since(t0)
		w.pool.put(c, err != nil)
		if err == nil {
			return code, wire, nil
		}
	}
	return 0, 0, err
}
