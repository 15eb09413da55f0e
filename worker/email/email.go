// Package email is the built-in email worker: inbox reads a Maildir, send
// writes a message into a local outbox or sends it over SMTP through the
// egress broker.
//
// Configuration (the worker's `config:` block, every key optional):
//
//	maildir:     the inbox, a Maildir (cur/, new/, tmp/); default
//	             <state>/email/Maildir, created empty. Relative paths are
//	             relative to the working directory (that of sluice.yaml).
//	address:     whose mailbox it is, me@home.example: the From of sent
//	             mail, and the one sender whose mail is not labeled
//	             untrusted.
//	authserv_id: when set, mail claiming to be from address is trusted only
//	             if the topmost Authentication-Results header added by that
//	             server (its authserv-id, e.g. mx.home.example) reports
//	             dmarc=pass, or dkim=pass for the address's domain. Without
//	             it, a From header alone decides, and anyone can write one.
//	smtp:        {url: smtp://host:587, username: "...",
//	             password: "{{secret:NAME}}"}: send over SMTP (STARTTLS, or
//	             TLS from the start with smtps://host:465). The egress
//	             broker connects, fills the password in and authenticates,
//	             only over TLS; the worker never holds it, so the password
//	             must be a placeholder. The worker needs a net grant for the
//	             host:port and the secret for the host. A server that is
//	             not on loopback and offers no STARTTLS gets nothing of
//	             the message: the send is refused, unless the block says
//	             insecure_plaintext: true (no username then: credentials
//	             never go in the clear).
//
// Without smtp, sent mail lands in <state>/email/outbox/<id>.eml.
//
// inbox returns the newest messages first (by delivery, the time the file
// was written into the Maildir), with MIME decoded: multipart, quoted-
// printable and base64, charsets (github.com/emersion/go-message), the
// text/plain part or else the HTML part turned into text. It never marks or
// moves a message. Each message from anyone but address is labeled
// untrusted with source email:<sender>.
//
// send happens once per idempotency key. Before anything leaves, the key is
// recorded in <state>/email/outbox/keys/; a retry finds the record and
// returns the same message id. When a send was cut short so that it may or
// may not have gone out (the worker died, or the broker did not answer in
// time), the retry is refused rather than risk a second copy; remove the
// key's record to send anyway.
//
// A confined worker keeps read access to the Maildir and write access to
// the outbox directory, nothing else.
package email

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/worker"
)

type smtpConfig struct {
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
	// InsecurePlaintext, true, lets mail go in the clear to a server that
	// is not on loopback and offers no STARTTLS. Absent or false, such a
	// send is refused before anything of the message leaves.
	InsecurePlaintext json.RawMessage `json:"insecure_plaintext"`

	insecurePlaintext bool
}

type config struct {
	Maildir    string      `json:"maildir"`
	Address    string      `json:"address"`
	AuthservID string      `json:"authserv_id"`
	SMTP       *smtpConfig `json:"smtp"`
}

var placeholderRE = regexp.MustCompile(`^\{\{secret:[A-Za-z0-9_.-]+\}\}$`)

// smtpPorts are the default ports of the schemes the broker speaks.
var smtpPorts = map[string]string{"smtp": "587", "smtps": "465"}

func loadConfig(env worker.Env) (cfg config, defMaildir bool, err error) {
	if raw := bytes.TrimSpace(env.Config); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return cfg, false, fmt.Errorf("email config: %w (keys are: address, authserv_id, maildir, smtp; smtp's keys are: url, username, password, insecure_plaintext)", err)
		}
	}
	if cfg.Address != "" {
		a, err := mail.ParseAddress(cfg.Address)
		if err != nil || a.Name != "" {
			return cfg, false, errors.New("email config: address must be an email address such as me@home.example")
		}
		cfg.Address = strings.ToLower(a.Address)
	}
	if env.State == "" {
		return cfg, false, errors.New("email config: no state directory")
	}
	if cfg.Maildir == "" {
		cfg.Maildir, defMaildir = filepath.Join(env.State, "email", "Maildir"), true
	}
	if cfg.Maildir, err = filepath.Abs(cfg.Maildir); err != nil {
		return cfg, false, fmt.Errorf("email config: maildir: %w", err)
	}
	if s := cfg.SMTP; s != nil {
		if cfg.Address == "" {
			return cfg, false, errors.New("email config: smtp needs address, the sender of the mail")
		}
		u, err := url.Parse(s.URL)
		if err != nil || smtpPorts[u.Scheme] == "" || u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
			return cfg, false, errors.New("email config: smtp.url must be smtp://host:port (STARTTLS) or smtps://host:port (TLS)")
		}
		if s.Password != "" && !placeholderRE.MatchString(s.Password) {
			return cfg, false, errors.New(`email config: smtp.password must be a placeholder such as "{{secret:mail_pw}}": the broker fills it in, a worker never holds a secret`)
		}
		if s.Password != "" && s.Username == "" {
			return cfg, false, errors.New("email config: smtp.password needs smtp.username")
		}
		switch v := string(bytes.TrimSpace(s.InsecurePlaintext)); v {
		case "", "null", "false":
		case "true":
			s.insecurePlaintext = true
		default:
			return cfg, false, fmt.Errorf("email config: smtp.insecure_plaintext must be true or false, not %s: true lets mail go in the clear to a server that offers no TLS", v)
		}
		if s.insecurePlaintext && u.Scheme == "smtps" {
			return cfg, false, errors.New("email config: smtp.insecure_plaintext: true does not go with smtps://, which is TLS from the start; use smtp://host:port, or drop insecure_plaintext")
		}
		if s.insecurePlaintext && s.Username != "" {
			return cfg, false, errors.New("email config: smtp.insecure_plaintext: true does not go with smtp.username: credentials are never sent in the clear")
		}
		port := u.Port()
		if port == "" {
			port = smtpPorts[u.Scheme]
		}
		hostport := net.JoinHostPort(strings.ToLower(u.Hostname()), port)
		if env.Manifest != nil && !slices.Contains(env.Manifest.Grants.Net, hostport) {
			return cfg, false, fmt.Errorf("email config: smtp.url: %s is not granted; add grants: {net: [%q]} to the email worker", hostport, hostport)
		}
	}
	return cfg, defMaildir, nil
}

// New opens the Maildir and the outbox, and returns the worker's handlers.
func New(env worker.Env) (map[string]worker.Handler, error) {
	cfg, defMaildir, err := loadConfig(env)
	if err != nil {
		return nil, err
	}
	if defMaildir {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(cfg.Maildir, sub), 0o700); err != nil {
				return nil, fmt.Errorf("email: create maildir: %w", err)
			}
		}
	}
	if !isMaildir(cfg.Maildir) {
		return nil, fmt.Errorf("email config: maildir %s is not a Maildir: it needs cur/ and new/ directories", cfg.Maildir)
	}
	out, err := openOutbox(filepath.Join(env.State, "email", "outbox"))
	if err != nil {
		return nil, err
	}
	if env.Keep != nil {
		env.Keep.RO = append(env.Keep.RO, cfg.Maildir)
		env.Keep.RW = append(env.Keep.RW, out.dir)
	}
	m := &mailbox{cfg: cfg, outbox: out, now: time.Now}
	return map[string]worker.Handler{"inbox": m.inbox, "send": m.send}, nil
}

var _ worker.Builtin = New

type mailbox struct {
	cfg    config
	outbox *outbox
	now    func() time.Time
}

func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		st, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || !st.IsDir() {
			return false
		}
	}
	return true
}

// decodeArgs unmarshals arguments into v. Its errors name the argument
// that failed, never the value.
func decodeArgs(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return worker.BadArguments("argument %s: expected %s", te.Field, te.Type)
		}
		return worker.BadArguments("arguments are not a JSON object of the expected shape")
	}
	return nil
}
