package mcp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// proxy is the HTTP(S) proxy of a stdio server with network grants: the
// only thing the server can reach (launcher.go). It sends each request
// through the egress broker, as part of the one tool call in flight, as a
// built-in worker does: the broker checks the host against the grants,
// by name and by address after DNS, fills in the {{secret:NAME}} the
// request carries for the secret's hosts only, removes what the answer
// echoes of it, and records the host, which labels the call's output.
//
// Plain requests come in absolute form (GET http://host/path). For https,
// the server sends CONNECT host:port; the proxy answers, and ends the TLS
// the server starts itself, with a certificate for that host minted by a
// certificate authority of its own (made in memory when the worker
// starts; the server is pointed at its certificate), so that it sees
// each request: a tunnel it cannot read would hide the request from the
// broker. The broker makes the request to the host, over TLS checked
// against the system's roots.
type proxy struct {
	m   *capabilities.Manifest
	log *slog.Logger

	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	leaf   *ecdsa.PrivateKey
	mu     sync.Mutex
	minted map[string]*tls.Certificate

	// now is the call the server serves: one at a time.
	now atomic.Pointer[inflight]
}

// inflight is the tool call a server serves, and its context: a request
// outlives neither.
type inflight struct {
	ctx  context.Context
	call *worker.Call
}

// proxyMaxBody bounds a request's body, as the broker bounds a response's.
const proxyMaxBody = 4 << 20

// newProxy makes the proxy and its certificate authority.
func newProxy(m *capabilities.Manifest, log *slog.Logger) (*proxy, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "Sluice proxy of worker " + m.Worker},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &proxy{m: m, log: log, ca: ca, caKey: caKey, leaf: leaf, minted: map[string]*tls.Certificate{},
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// certificate is a certificate for host, minted once.
func (p *proxy) certificate(host string) (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.minted[host]; ok {
		return c, nil
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: host},
		NotBefore: p.ca.NotBefore, NotAfter: p.ca.NotAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if a, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = []net.IP{a.AsSlice()}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &p.leaf.PublicKey, p.caKey)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: p.leaf}
	p.minted[host] = c
	return c, nil
}

// serve accepts the server's connections until ln is closed.
func (p *proxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Warn("the MCP server's proxy stopped", "err", err.Error())
			}
			return
		}
		go p.conn(c)
	}
}

// bufConn reads what a bufio.Reader already holds before the connection.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// conn serves one connection: requests in absolute form, or one CONNECT
// and the requests inside the TLS it opens.
func (p *proxy) conn(c net.Conn) {
	defer c.Close()
	var rw io.ReadWriter = c
	br := bufio.NewReader(c)
	tunnel := "" // host:port of a CONNECT
	for range 10000 {
		// A connection held idle is closed.
		c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Method == http.MethodConnect {
			if tunnel != "" || !hasPort(req.Host) {
				refusal(http.StatusBadRequest, "a CONNECT names host:port, once").Write(rw)
				return
			}
			tunnel = req.Host
			if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(tunnel)
			tc := tls.Server(bufConn{c, br}, &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
				GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.certificate(host) }})
			if err := tc.Handshake(); err != nil {
				p.log.Warn("the MCP server's proxy: TLS with the server failed", "host", tunnel, "err", err.Error())
				return
			}
			rw, br = tc, bufio.NewReader(tc)
			continue
		}
		resp := p.forward(req, tunnel)
		if err := resp.Write(rw); err != nil || req.Close {
			return
		}
	}
}

func hasPort(hostport string) bool {
	_, port, err := net.SplitHostPort(hostport)
	return err == nil && port != ""
}

// hop are the headers of one connection, not of the request.
var hop = map[string]bool{"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authorization": true,
	"Proxy-Authenticate": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Content-Encoding": true}

// forward sends one request through the egress broker, as part of the
// call in flight, and returns the answer; or a refusal, when nothing was
// sent.
func (p *proxy) forward(req *http.Request, tunnel string) *http.Response {
	defer req.Body.Close()
	target := req.URL.String()
	if tunnel != "" {
		target = "https://" + tunnel + req.URL.RequestURI()
	} else if !req.URL.IsAbs() || (req.URL.Scheme != "http" && req.URL.Scheme != "https") {
		return refusal(http.StatusBadRequest, "the proxy takes requests in absolute form (GET http://host/path) and CONNECT for https")
	}
	now := p.now.Load()
	if now == nil {
		return refusal(http.StatusServiceUnavailable, "no tool call in flight: the request is not sent")
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, proxyMaxBody+1))
	if err != nil {
		return refusal(http.StatusBadRequest, "reading the request: "+err.Error())
	}
	if len(body) > proxyMaxBody {
		return refusal(http.StatusRequestEntityTooLarge, fmt.Sprintf("a request's body is at most %d bytes: the request is not sent", proxyMaxBody))
	}
	er := schemas.EgressRequest{Method: req.Method, URL: target, Headers: map[string]string{}, Body: body}
	for k, v := range req.Header {
		if !hop[http.CanonicalHeaderKey(k)] && len(v) > 0 {
			er.Headers[k] = v[0]
		}
	}
	resp, err := now.call.HTTP(now.ctx, er)
	if err != nil {
		return p.refused(now.call, err)
	}
	out := &http.Response{StatusCode: resp.Status, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{},
		Body: io.NopCloser(bytes.NewReader(resp.Body)), ContentLength: int64(len(resp.Body))}
	for k, v := range resp.Headers {
		if !hop[http.CanonicalHeaderKey(k)] {
			out.Header.Set(k, v)
		}
	}
	return out
}

// refused is the answer to a request the broker refused (403) or could
// not make (502), with its reason.
func (p *proxy) refused(call *worker.Call, err error) *http.Response {
	msg := err.Error()
	if errors.Is(err, worker.ErrNoEgress) {
		msg = "worker " + p.m.Worker + " has no network grant"
	}
	p.log.Warn("the MCP server's request was refused", "msg_id", call.Msg, "err", msg)
	status := http.StatusBadGateway
	var re *schemas.ReplyError
	if errors.As(err, &re) && re.Code == schemas.CodeEgress {
		status = http.StatusForbidden
	}
	return refusal(status, msg)
}

// refusal is the proxy's own answer, its reason in the body.
func refusal(status int, reason string) *http.Response {
	body := "sluice: " + reason + "\n"
	h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	return &http.Response{StatusCode: status, ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
}
