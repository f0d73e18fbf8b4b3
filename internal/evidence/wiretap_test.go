package evidence

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// wireTap records the plaintext of every HTTPS connection that clones of
// http.DefaultTransport open, so a test can read the requests and responses
// of in-process CLI commands. The CLI's transport is such a clone: it
// replaces DialContext and TLSClientConfig but keeps DialTLSContext, which
// the tap sets.
type wireTap struct {
	mu    sync.Mutex
	conns []*tapConn
}

// tapConn is a TLS connection that keeps a copy of what crossed it.
type tapConn struct {
	net.Conn
	mu       sync.Mutex
	sent     bytes.Buffer
	received bytes.Buffer
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.received.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.sent.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// installWireTap replaces http.DefaultTransport with a clone whose TLS
// dialer records, trusting roots, until the test ends. Tests that use it
// must not run in parallel.
func installWireTap(t *testing.T, roots *x509.CertPool) *wireTap {
	t.Helper()
	orig := http.DefaultTransport
	transport := orig.(*http.Transport).Clone()
	tap := &wireTap{}
	var dialer net.Dialer
	transport.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		target := addr
		if strings.HasSuffix(strings.ToLower(host), ".localhost") {
			target = net.JoinHostPort("127.0.0.1", port)
		}
		raw, err := dialer.DialContext(ctx, network, target)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: host, NextProtos: []string{"http/1.1"},
			MinVersion: tls.VersionTLS12})
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		c := &tapConn{Conn: conn}
		tap.mu.Lock()
		tap.conns = append(tap.conns, c)
		tap.mu.Unlock()
		return c, nil
	}
	http.DefaultTransport = transport
	t.Cleanup(func() { http.DefaultTransport = orig })
	return tap
}

// wireExchange is one request and its response as sent on the wire.
type wireExchange struct {
	Host, Method, Path string
	Request, Response  string // start line, headers and decoded body
}

// exchanges parses the recorded connections into request and response
// pairs. A connection cut short yields the exchanges before the cut, and
// its remaining bytes as one exchange with an empty Path.
func (w *wireTap) exchanges() []wireExchange {
	w.mu.Lock()
	conns := append([]*tapConn(nil), w.conns...)
	w.mu.Unlock()
	var out []wireExchange
	for _, c := range conns {
		c.mu.Lock()
		sent, received := c.sent.Bytes(), c.received.Bytes()
		c.mu.Unlock()
		out = append(out, parseConn(sent, received)...)
	}
	return out
}

func parseConn(sent, received []byte) []wireExchange {
	var out []wireExchange
	reqs, resps := bufio.NewReader(bytes.NewReader(sent)), bufio.NewReader(bytes.NewReader(received))
	for {
		req, err := http.ReadRequest(reqs)
		if err != nil {
			break
		}
		ex := wireExchange{Host: req.Host, Method: req.Method, Path: req.URL.Path}
		ex.Request = dumpMessage(req.Method+" "+req.URL.String(), req.Header, req.Body)
		resp, err := http.ReadResponse(resps, req)
		if err == nil {
			ex.Response = dumpMessage(resp.Status, resp.Header, resp.Body)
		}
		out = append(out, ex)
		if err != nil {
			break
		}
	}
	rest, _ := io.ReadAll(reqs)
	restResp, _ := io.ReadAll(resps)
	if len(rest)+len(restResp) > 0 {
		out = append(out, wireExchange{Request: string(rest), Response: string(restResp)})
	}
	return out
}

func dumpMessage(start string, h http.Header, body io.ReadCloser) string {
	var b strings.Builder
	b.WriteString(start + "\n")
	_ = h.Write(&b)
	if body != nil {
		data, _ := io.ReadAll(body)
		body.Close()
		b.Write(data)
	}
	return b.String()
}
