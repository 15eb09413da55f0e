// Package egress is the egress broker: the only way a worker reaches the
// network. A worker sends an HTTP request on its egress subject; the broker
// checks the destination against the worker's grants — by name, and again
// by address after DNS, and again on every redirect — performs the request
// and returns the response.
//
// The broker also reports every host a call reached (Config.Track), so the
// orchestrator labels the call's output with where its content came from,
// instead of trusting the worker to say so.
package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"code.dny.dev/ssrf"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/orchestrator/internal/echo"
	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
	"github.com/sluicehq/sluice/schemas"
)

// Config of the broker.
type Config struct {
	// Grants lists, by worker, the host:port each may reach. A worker not
	// listed may reach nothing.
	Grants map[string][]string
	// Track is called before each request (and each redirect hop) with the
	// worker, the id of the tool call it serves (header Sluice-Msg) and the
	// destination host:port. It returns false when that worker has no such
	// call in flight; the request is then refused.
	Track func(worker, msgID, hostport string) bool
	// Orchestrator, when several share the deployment, is this one's id:
	// a request naming another orchestrator (schemas.HeaderOrchestrator),
	// which delivered the call and answers it, is left to that one.
	Orchestrator string
	// Filled, when set, is told of each request of worker serving call
	// msgID into which a secret was filled, before it is sent.
	Filled func(worker, msgID string)
	// MaxBody bounds a response body; default 4 MiB.
	MaxBody int64
	// Timeout bounds one request, redirects included; default 15s.
	Timeout time.Duration
	Log     *slog.Logger
	// Resolver looks up names; default net.DefaultResolver.
	Resolver *net.Resolver
	// Secrets by name, and by worker the secrets its requests may carry,
	// each to its hosts only.
	Secrets      map[string]Secret
	SecretGrants map[string][]SecretGrant
	// Report, when set, is told of every request, performed or refused.
	Report func(Event)
	// Span, when set, returns the span of call msgID, the parent of the
	// span of each request made for it.
	Span func(msgID string) trace.SpanContext
	// RootCAs verifies servers' certificates; nil means the system's.
	RootCAs *x509.CertPool
}

// defaultPorts are the schemes the broker speaks, with their ports.
var defaultPorts = map[string]string{"http": "80", "https": "443", "smtp": "587", "smtps": "465"}

// Broker performs workers' HTTP requests.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	wg     sync.WaitGroup
	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	// guard judges resolved addresses by the IANA special-purpose
	// registries; ports and networks are the grants' business.
	guard *ssrf.Guardian
	// isLoopback says whether mail may go in the clear to a server at an
	// address that offers no TLS (netip.Addr.IsLoopback); tests replace it
	// to treat a server on loopback as remote.
	isLoopback func(netip.Addr) bool
	// echoes finds every configured secret in a response, in every form
	// it knows; computed once.
	echoes *echo.Matcher
}

// New returns a broker.
func New(cfg Config) *Broker {
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 4 << 20
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	values := map[string][]byte{}
	for n, sec := range cfg.Secrets {
		values[n] = sec.value
	}
	b := &Broker{cfg: cfg, log: log, guard: ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork()),
		isLoopback: netip.Addr.IsLoopback, echoes: echo.New(values)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// Serve answers requests on every worker's egress subject until the
// subscription is drained.
func (b *Broker) Serve(nc *nats.Conn, s schemas.Subjects) (*nats.Subscription, error) {
	return nc.Subscribe(s.EgressWildcard(), func(m *nats.Msg) {
		if o := m.Header.Get(schemas.HeaderOrchestrator); o != "" && b.cfg.Orchestrator != "" && o != b.cfg.Orchestrator {
			return
		}
		worker := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			resp := b.Do(b.ctx, worker, m.Header.Get(schemas.HeaderMsg), m.Data)
			out, _ := json.Marshal(resp)
			_ = m.Respond(out)
		}()
	})
}

// Close ends the requests in progress, whose workers are gone, and waits
// for them.
func (b *Broker) Close() {
	b.cancel()
	b.wg.Wait()
}

func refuse(format string, args ...any) *schemas.EgressResponse {
	return &schemas.EgressResponse{Error: &schemas.ReplyError{Code: schemas.CodeEgress, Message: fmt.Sprintf(format, args...)}}
}

// Event is one request the broker performed or refused, for the audit log.
// It names the destination, never the URL's path or query, which may
// carry data.
type Event struct {
	Worker, MsgID string
	// Host is the destination host:port, when the URL could be read.
	Host string
	// Status is the HTTP status of a performed request.
	Status int
	// Refused is the reason the request was not performed, or "".
	Refused string
}

// Do checks and performs one request of worker, serving call msgID, and
// reports it to Config.Report.
//
// Each request is a span, a child of its call's: it names the worker, the
// destination host:port and the outcome, never the URL's path or query.
func (b *Broker) Do(ctx context.Context, worker, msgID string, body []byte) *schemas.EgressResponse {
	if b.cfg.Span != nil {
		if sc := b.cfg.Span(msgID); sc.IsValid() {
			ctx = trace.ContextWithSpanContext(ctx, sc)
		}
	}
	ctx, span := telemetry.Tracer().Start(ctx, "egress", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(telemetry.AttrWorker.String(worker), telemetry.AttrMsgID.String(msgID)))
	resp := b.do(ctx, worker, msgID, body)
	ev := Event{Worker: worker, MsgID: msgID, Status: resp.Status}
	var req schemas.EgressRequest
	if json.Unmarshal(body, &req) == nil {
		if u, err := url.Parse(req.URL); err == nil && u.Host != "" && !placeholderRE.MatchString(u.Host) {
			ev.Host = u.Host
			if p, ok := defaultPorts[u.Scheme]; ok && u.Port() == "" {
				ev.Host = net.JoinHostPort(u.Hostname(), p)
			}
		}
	}
	if resp.Error != nil {
		ev.Refused = resp.Error.Message
	}
	if span.IsRecording() {
		outcome := "performed"
		if ev.Refused != "" {
			outcome = "refused"
		} else {
			span.SetAttributes(attribute.Int("http.response.status_code", resp.Status))
		}
		span.SetAttributes(telemetry.AttrHost.String(ev.Host), telemetry.AttrOutcome.String(outcome))
	}
	span.End()
	if b.cfg.Report != nil {
		b.cfg.Report(ev)
	}
	return resp
}

func (b *Broker) do(ctx context.Context, worker, msgID string, body []byte) *schemas.EgressResponse {
	var req schemas.EgressRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return refuse("malformed egress request")
	}
	method := strings.ToUpper(req.Method)
	if method == "" {
		method = http.MethodGet
	}
	if method == MethodSMTP {
		return b.sendMail(ctx, worker, msgID, req)
	}
	o, refused := b.admit(worker, msgID, req.URL)
	if refused != nil {
		return refused
	}
	headers, reqBody, refused := b.fillRequest(o, req)
	if refused != nil {
		return refused
	}
	if len(o.sub.used) > 0 && b.cfg.Filled != nil {
		b.cfg.Filled(worker, msgID)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, method, o.u.String(), strings.NewReader(reqBody))
	if err != nil {
		return refuse("bad request")
	}
	for k, v := range headers {
		// The transport asks for gzip itself and decompresses what it
		// gets, so that the scrubber sees the plain body: a worker may
		// not ask for an encoding that would carry an echo past it.
		if strings.EqualFold(k, "Accept-Encoding") {
			continue
		}
		hreq.Header.Set(k, v)
	}
	client := b.client(o)
	defer client.CloseIdleConnections()
	resp, err := client.Do(hreq)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry a secret
		}
		msg := scrub2(err.Error(), o.sub.used)
		b.log.Warn("egress failed", "worker", worker, "msg_id", msgID, "host", o.hostport, "err", msg)
		return refuse("request to %s failed: %s", o.hostport, msg)
	}
	defer resp.Body.Close()
	return b.response(o, resp)
}

// outbound is one HTTP request the broker makes for a worker's call: where
// it goes, and the secrets filled into it.
type outbound struct {
	worker, msgID string
	u             *url.URL
	hostport      string
	sub           substitution
}

// admit checks that worker may reach raw for the call msgID in flight,
// and fills the secrets of the URL in, for their own hosts only: the
// worker never sees them.
func (b *Broker) admit(worker, msgID, raw string) (*outbound, *schemas.EgressResponse) {
	u, hostport, err := b.check(worker, raw)
	if err != nil {
		b.log.Warn("egress refused", "worker", worker, "msg_id", msgID, "err", err)
		return nil, refuse("%s", withGrantHint(err))
	}
	if b.cfg.Track == nil || !b.cfg.Track(worker, msgID, hostport) {
		return nil, refuse("worker %s has no call %q in flight", worker, msgID)
	}
	if placeholderRE.MatchString(u.Host) {
		return nil, refuse("a secret may not name the host")
	}
	o := &outbound{worker: worker, msgID: msgID, u: u, hostport: hostport}
	filled, err := b.fill(worker, u.Hostname(), u.String(), &o.sub)
	if err != nil {
		return nil, refuse("%v", err)
	}
	if len(o.sub.used) > 0 {
		u2, hp2, err := b.check(worker, filled)
		if err != nil || hp2 != hostport {
			return nil, refuse("a secret may not change the destination")
		}
		o.u = u2
	}
	return o, nil
}

// fillRequest fills the secrets of the request's headers and body in.
func (b *Broker) fillRequest(o *outbound, req schemas.EgressRequest) (map[string]string, string, *schemas.EgressResponse) {
	host := o.u.Hostname()
	headers := map[string]string{}
	for k, v := range req.Headers {
		h, err := b.fill(o.worker, host, v, &o.sub)
		if err != nil {
			return nil, "", refuse("header %s: %v", k, err)
		}
		headers[k] = h
	}
	body, err := b.fill(o.worker, host, string(req.Body), &o.sub)
	if err != nil {
		return nil, "", refuse("body: %v", err)
	}
	return headers, body, nil
}

// client makes the request: no proxy, every address dialled checked
// (dialer), and every redirect checked as the request was.
func (b *Broker) client(o *outbound) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            b.dialer(o.worker),
			TLSHandshakeTimeout:    10 * time.Second,
			ResponseHeaderTimeout:  b.cfg.Timeout,
			TLSClientConfig:        &tls.Config{RootCAs: b.cfg.RootCAs, MinVersion: tls.VersionTLS12},
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(r *http.Request, via []*http.Request) error { return b.redirect(o, r, via) },
	}
}

// redirect checks a redirect as the request was checked: a granted host,
// no secret in the new location, no secret header for another host, and
// the call still in flight.
func (b *Broker) redirect(o *outbound, r *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	_, hp, err := b.check(o.worker, r.URL.String())
	if err != nil {
		return fmt.Errorf("redirect refused: %w", err)
	}
	if containsSecret(r.URL.String(), o.sub.used) {
		return errors.New("redirect refused: the new location carries a secret")
	}
	if !b.allowedFor(o.worker, r.URL.Hostname(), o.sub.used) {
		// The secrets go to their own hosts only: drop every header
		// that carries one.
		for k, vs := range r.Header {
			if slices.ContainsFunc(vs, func(v string) bool { return containsSecret(v, o.sub.used) }) {
				r.Header.Del(k)
			}
		}
	}
	if !b.cfg.Track(o.worker, o.msgID, hp) {
		return errors.New("redirect refused: call no longer in flight")
	}
	return nil
}

// response reads what the server answered, bounded, and gives the worker
// only what holds no secret.
func (b *Broker) response(o *outbound, resp *http.Response) *schemas.EgressResponse {
	hostport := o.hostport
	data, err := io.ReadAll(io.LimitReader(resp.Body, b.cfg.MaxBody+1))
	if err != nil {
		return refuse("reading response from %s: %v", hostport, err)
	}
	if int64(len(data)) > b.cfg.MaxBody {
		return &schemas.EgressResponse{Error: &schemas.ReplyError{Code: schemas.CodeTooLarge,
			Message: fmt.Sprintf("response from %s exceeds %d bytes", hostport, b.cfg.MaxBody)}}
	}
	// A body still encoded (one the transport did not decompress) could
	// carry an echo past the scrubber: it is refused.
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return refuse("response from %s has Content-Encoding %q; only plain and gzip bodies are accepted", hostport, ce)
	}
	// Whatever the server echoed of a secret is removed before the worker
	// sees it; an echo the broker finds but cannot cut out (inside a
	// string that escapes only some of its characters) refuses the whole
	// response.
	scrubbed, _ := b.echoes.Replace(scrub(data, o.sub.used))
	if found := b.echoes.Find(string(scrubbed)); len(found) > 0 {
		b.log.Warn("egress response echoed a secret", "worker", o.worker, "msg_id", o.msgID, "host", hostport, "secrets", found)
		return refuse("response from %s echoed a secret in a form that could not be removed", hostport)
	}
	out := &schemas.EgressResponse{Status: resp.StatusCode, Headers: map[string]string{}, Body: scrubbed}
	for k, v := range resp.Header {
		if len(v) > 0 {
			h, _ := b.echoes.Replace([]byte(scrub2(v[0], o.sub.used)))
			out.Headers[k] = string(h)
		}
	}
	return out
}

// check parses raw and returns it with its host:port if worker may reach it.
func (b *Broker) check(worker, raw string) (*url.URL, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", errors.New("unparsable URL")
	}
	if _, ok := defaultPorts[u.Scheme]; !ok {
		return nil, "", fmt.Errorf("scheme %q is not allowed (http, https, smtp, smtps)", u.Scheme)
	}
	if u.User != nil {
		return nil, "", errors.New("URLs with user info are not allowed")
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		port = defaultPorts[u.Scheme]
	}
	hostport := net.JoinHostPort(host, port)
	if !slices.Contains(b.cfg.Grants[worker], hostport) {
		return nil, "", &notGrantedError{hostport: hostport, worker: worker}
	}
	return u, hostport, nil
}

// notGrantedError is a destination the worker's grants do not name.
type notGrantedError struct{ hostport, worker string }

func (e *notGrantedError) Error() string {
	return fmt.Sprintf("%s is not granted to worker %s", e.hostport, e.worker)
}

// withGrantHint is err's text, and when err is a destination that is not
// granted, the grant that would allow it. Only a request's own URL gets the
// hint: a redirect's target is chosen by the server, which must not be
// able to suggest what to grant.
func withGrantHint(err error) string {
	var ng *notGrantedError
	if !errors.As(err, &ng) {
		return err.Error()
	}
	return fmt.Sprintf("%v; to allow it, add grants: {net: [%q]} to the %s worker in sluice.yaml", err, ng.hostport, ng.worker)
}

// dialer resolves the destination itself and refuses addresses the grant
// does not name: a granted name that resolves to a loopback, private,
// link-local or otherwise special-purpose address is refused, so a name
// cannot smuggle in an internal address. An address is allowed only where
// the grant names that address literally (or names "localhost" for
// loopback).
func (b *Broker) dialer(worker string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		ips, err := b.resolve(ctx, worker, host, port)
		if err != nil {
			return nil, err
		}
		var lastErr error
		for _, ip := range ips {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			if err == nil {
				return c, nil
			}
			lastErr = err
		}
		return nil, lastErr
	}
}

// resolve returns the addresses of host that worker may connect to on
// port, in the resolver's order: every address the grant does not name is
// judged by the IANA special-purpose address registries, and refused when
// it is in one of them. It fails when no address is left.
func (b *Broker) resolve(ctx context.Context, worker, host, port string) ([]netip.Addr, error) {
	host = strings.ToLower(host)
	if !slices.Contains(b.cfg.Grants[worker], net.JoinHostPort(host, port)) {
		return nil, fmt.Errorf("%s is not granted", net.JoinHostPort(host, port))
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = b.cfg.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
	}
	var ok []netip.Addr
	var lastErr error = fmt.Errorf("%s has no address", host)
	for _, ip := range ips {
		ip = ip.Unmap()
		if err := b.addressAllowed(host, ip); err != nil {
			lastErr = err
			continue
		}
		ok = append(ok, ip)
	}
	if len(ok) == 0 {
		return nil, lastErr
	}
	return ok, nil
}

// addressAllowed says whether host, granted by name or by address, may be
// reached at ip (unmapped): an address the grant names literally, a
// loopback address for "localhost", and otherwise any address that no IANA
// special-purpose registry lists (code.dny.dev/ssrf): not loopback,
// private, link-local, shared (100.64.0.0/10, where carrier-grade NAT,
// Tailscale and some clouds' metadata services live), benchmarking,
// reserved, multicast, "this network", nor an IPv6 address outside global
// unicast or inside its special ranges — NAT64 (64:ff9b::/96) and 6to4
// (2002::/16), which can carry any IPv4 address, included.
func (b *Broker) addressAllowed(host string, ip netip.Addr) error {
	if lit, err := netip.ParseAddr(host); err == nil {
		if lit.Unmap() == ip {
			return nil
		}
		return fmt.Errorf("%s is not %s", ip, host)
	}
	if host == "localhost" {
		if ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("localhost resolves to %s, which is not a loopback address", ip)
	}
	if err := b.guard.SafeAddr(ip); err != nil {
		return fmt.Errorf("%s resolves to %s, which the grant does not name (a special-purpose address)", host, ip)
	}
	return nil
}
