package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sluicehq/sluice/schemas"
)

// MethodSMTP is the method of an egress request that sends mail. Its URL
// is smtp://host:port (STARTTLS, required unless the server is on loopback
// or the request says so (schemas.SMTPInsecurePlaintext), and always before
// authenticating) or smtps://host:port (TLS from the start). The envelope
// and the credentials are headers — Mail-From, Rcpt-To (comma separated),
// Auth-Username, Auth-Password — and the body is the message. Credentials
// are secrets: {{secret:NAME}}, filled in here for their hosts only, so a
// mail password never reaches the worker.
const MethodSMTP = "SMTP"

// sendMail performs an SMTP request.
func (b *Broker) sendMail(ctx context.Context, worker, msgID string, req schemas.EgressRequest) *schemas.EgressResponse {
	u, hostport, err := b.check(worker, req.URL)
	if err != nil {
		return refuse("%v", err)
	}
	if u.Scheme != "smtp" && u.Scheme != "smtps" {
		return refuse("an SMTP request needs an smtp:// or smtps:// URL")
	}
	if !b.cfg.Track(worker, msgID, hostport) {
		return refuse("worker %s has no call %q in flight", worker, msgID)
	}
	host := u.Hostname()
	var sub substitution
	h := map[string]string{}
	for _, k := range []string{"Mail-From", "Rcpt-To", "Auth-Username", "Auth-Password", schemas.SMTPInsecurePlaintext} {
		if h[k], err = b.fill(worker, host, req.Headers[k], &sub); err != nil {
			return refuse("header %s: %v", k, err)
		}
	}
	if placeholderRE.Match(req.Body) {
		return refuse("a secret may not be put in a message")
	}
	var rcpts []string
	for _, r := range strings.Split(h["Rcpt-To"], ",") {
		if r = strings.TrimSpace(r); r != "" {
			rcpts = append(rcpts, r)
		}
	}
	if h["Mail-From"] == "" || len(rcpts) == 0 {
		return refuse("an SMTP request needs Mail-From and Rcpt-To")
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	if err := b.smtpSend(ctx, worker, u.Scheme, host, hostport, h, rcpts, req.Body); err != nil {
		return refuse("smtp %s: %s", hostport, scrub2(err.Error(), sub.used))
	}
	return &schemas.EgressResponse{Status: 250}
}

// errNoTLS is why mail is not sent to a server that offers no TLS.
var errNoTLS = errors.New("mail goes to a server that is not on loopback only over TLS (STARTTLS or smtps://), " +
	"unless the email worker's smtp.insecure_plaintext is true")

// plaintextAllowed says whether mail may go in the clear to a server that
// offers no TLS: only when the server is on loopback (remote is the address
// the broker connected to, not a name), or when the configuration says
// insecure_plaintext in so many words. Credentials never go in the clear.
func plaintextAllowed(remote netip.Addr, insecurePlaintext bool, isLoopback func(netip.Addr) bool) bool {
	return insecurePlaintext || isLoopback(remote.Unmap())
}

func (b *Broker) smtpSend(ctx context.Context, worker, scheme, host, hostport string, h map[string]string, rcpts []string, body []byte) error {
	insecure := false
	switch v := h[schemas.SMTPInsecurePlaintext]; v {
	case "", "false":
	case "true":
		insecure = true
	default:
		return fmt.Errorf("header %s must be true or false", schemas.SMTPInsecurePlaintext)
	}
	c, err := b.smtpConnect(ctx, worker, scheme, host, hostport, insecure)
	if err != nil {
		return err
	}
	defer c.Close()
	return submit(c, h, rcpts, body)
}

// smtpConnect connects to the mail server and returns a client over TLS
// unless plaintext is allowed (plaintextAllowed) and the server offers no
// TLS.
func (b *Broker) smtpConnect(ctx context.Context, worker, scheme, host, hostport string, insecure bool) (*smtp.Client, error) {
	dial := func() (net.Conn, error) {
		conn, err := b.dialer(worker)(ctx, "tcp", hostport)
		if err != nil {
			return nil, err
		}
		// go-smtp sets a deadline per command; the request's own deadline
		// closes the connection.
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		return &stopConn{Conn: conn, stop: stop}, nil
	}
	conn, err := dial()
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{ServerName: host, RootCAs: b.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	switch {
	case scheme == "smtps":
		tc := tls.Client(conn, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		c := smtp.NewClient(tc)
		c.CommandTimeout, c.SubmissionTimeout = b.cfg.Timeout, b.cfg.Timeout
		return c, nil
	case !plaintextAllowed(remoteAddr(conn), insecure, b.isLoopback):
		// TLS is required: STARTTLS before anything else is said, and
		// nothing of the message is sent when it fails.
		c, err := startTLS(conn, tlsConf, b.cfg.Timeout)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("%v: %w", err, errNoTLS)
		}
		return c, nil
	}
	// Plaintext is allowed where TLS is not offered; where it is, it is
	// used, on a new connection, and never given up for plaintext.
	c := smtp.NewClient(conn)
	c.CommandTimeout, c.SubmissionTimeout = b.cfg.Timeout, b.cfg.Timeout
	if err := c.Hello("localhost"); err != nil {
		c.Close()
		return nil, err
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return c, nil
	}
	_ = c.Quit()
	c.Close()
	if conn, err = dial(); err != nil {
		return nil, err
	}
	if c, err = startTLS(conn, tlsConf, b.cfg.Timeout); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// submit sends one message on c: credentials only over TLS.
func submit(c *smtp.Client, h map[string]string, rcpts []string, body []byte) error {
	_, isTLS := c.TLSConnectionState()
	if h["Auth-Username"] != "" {
		if !isTLS {
			return errors.New("the server offers no TLS: credentials are not sent in the clear")
		}
		if err := c.Auth(sasl.NewPlainClient("", h["Auth-Username"], h["Auth-Password"])); err != nil {
			return err
		}
	}
	if err := c.Mail(h["Mail-From"], nil); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return fmt.Errorf("recipient %s: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// startTLS greets the server and starts TLS on conn, or fails without
// having sent anything but EHLO and STARTTLS.
func startTLS(conn net.Conn, conf *tls.Config, timeout time.Duration) (*smtp.Client, error) {
	c, err := smtp.NewClientStartTLS(conn, conf)
	if err != nil {
		return nil, err
	}
	c.CommandTimeout, c.SubmissionTimeout = timeout, timeout
	return c, nil
}

// remoteAddr is the address conn is connected to.
func remoteAddr(conn net.Conn) netip.Addr {
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// stopConn releases the context hook that closes the connection when the
// connection is closed first.
type stopConn struct {
	net.Conn
	stop func() bool
}

func (c *stopConn) Close() error {
	c.stop()
	return c.Conn.Close()
}
