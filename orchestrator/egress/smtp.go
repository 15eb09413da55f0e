package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/smtp"
	"strings"
	"time"

	"github.com/sluicehq/sluice/schemas"
)

// MethodSMTP is the method of an egress request that sends mail. Its URL
// is smtp://host:port (STARTTLS when the server offers it, and required
// before authenticating) or smtps://host:port (TLS from the start). The
// envelope and the credentials are headers — Mail-From, Rcpt-To (comma
// separated), Auth-Username, Auth-Password — and the body is the message.
// Credentials are secrets: {{secret:NAME}}, filled in here for their hosts
// only, so a mail password never reaches the worker.
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
	for _, k := range []string{"Mail-From", "Rcpt-To", "Auth-Username", "Auth-Password"} {
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

func (b *Broker) smtpSend(ctx context.Context, worker, scheme, host, hostport string, h map[string]string, rcpts []string, body []byte) error {
	conn, err := b.dialer(worker)(ctx, "tcp", hostport)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	tlsConf := &tls.Config{ServerName: host, RootCAs: b.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if scheme == "smtps" {
		tc := tls.Client(conn, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return err
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return err
	}
	_, isTLS := conn.(*tls.Conn)
	if ok, _ := c.Extension("STARTTLS"); ok && !isTLS {
		if err := c.StartTLS(tlsConf); err != nil {
			return err
		}
		isTLS = true
	}
	if h["Auth-Username"] != "" {
		if !isTLS {
			return errors.New("the server offers no TLS: credentials are not sent in the clear")
		}
		if err := c.Auth(smtp.PlainAuth("", h["Auth-Username"], h["Auth-Password"], host)); err != nil {
			return err
		}
	}
	if err := c.Mail(h["Mail-From"]); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
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
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	return c.Quit()
}
