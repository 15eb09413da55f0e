package email

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// outbox is the directory sent mail and the idempotency records live in,
// opened as an os.Root so that no name can lead out of it.
type outbox struct {
	dir  string
	root *os.Root
}

const keysDir = "keys"

func openOutbox(dir string) (*outbox, error) {
	if err := os.MkdirAll(filepath.Join(dir, keysDir), 0o700); err != nil {
		return nil, fmt.Errorf("email: create outbox: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("email: open outbox: %w", err)
	}
	return &outbox{dir: dir, root: root}, nil
}

// record is what the outbox keeps of one idempotency key.
type record struct {
	MessageID string `json:"message_id"`
	// State is "sending" from before the message leaves until it is known
	// to have gone, then "sent".
	State  string `json:"state"`
	Digest string `json:"digest"` // of the recipient, subject and body
	Via    string `json:"via"`    // smtp or outbox
	At     string `json:"at"`
}

const (
	stateSending = "sending"
	stateSent    = "sent"
)

// create writes name with data, all or nothing: a temporary file, synced,
// renamed into place, and the directory synced. With exclusive, an
// existing name is not replaced and fs.ErrExist is returned.
func (o *outbox) create(name string, data []byte, exclusive bool) error {
	if exclusive {
		f, err := o.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return o.syncDir(filepath.Dir(name))
	}
	tmp := name + ".tmp"
	f, err := o.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = o.root.Rename(tmp, name)
	}
	if err != nil {
		_ = o.root.Remove(tmp)
		return err
	}
	return o.syncDir(filepath.Dir(name))
}

func (o *outbox) syncDir(dir string) error {
	d, err := o.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (o *outbox) readRecord(name string) (record, error) {
	var r record
	f, err := o.root.Open(name)
	if err != nil {
		return r, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return r, err
	}
	if json.Unmarshal(b, &r) != nil || r.State == "" {
		// Cut short while it was being written: the send had not been
		// finished, so it may have been under way.
		r.State = stateSending
	}
	return r, nil
}

type sendArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

func (m *mailbox) send(ctx context.Context, call *worker.Call) (any, error) {
	var args sendArgs
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	to, err := mail.ParseAddress(args.To)
	if err != nil || strings.ContainsAny(to.Address, "\r\n<>,;") {
		return nil, worker.BadArguments("argument to: want one email address, such as ana@x.example or \"Ana <ana@x.example>\"")
	}
	if strings.Contains(args.To, "{{") {
		// The recipient is an envelope header of the SMTP request, where
		// the broker fills placeholders in: no argument may ask for one.
		return nil, worker.BadArguments("argument to may not contain \"{{\"")
	}
	if call.IdempotencyKey == "" {
		return nil, worker.Failed("the call has no idempotency key; sending mail needs one")
	}
	id := messageName(call.IdempotencyKey)
	digest := sha256.Sum256([]byte(strings.ToLower(to.Address) + "\x00" + args.Subject + "\x00" + args.Body))
	via := "outbox"
	if m.cfg.SMTP != nil {
		via = "smtp"
	}
	rec := record{MessageID: id + "@" + m.domain(), State: stateSending, Digest: hex.EncodeToString(digest[:]), Via: via,
		At: m.now().UTC().Format(time.RFC3339)}
	keyFile := filepath.Join(keysDir, id+".json")

	// The record is written before anything leaves: whoever creates it
	// sends, anyone else (a replica, a retry) finds it.
	b, _ := json.Marshal(rec)
	switch err := m.outbox.create(keyFile, b, true); {
	case errors.Is(err, fs.ErrExist):
		prev, err := m.outbox.readRecord(keyFile)
		if err != nil {
			return nil, worker.Failed("read the record of this send: %v", unwrapPath(err))
		}
		switch {
		case prev.Digest != rec.Digest && prev.Digest != "":
			return nil, worker.Failed("idempotency key reused with different arguments")
		case prev.State == stateSent:
			return map[string]any{"message_id": prev.MessageID}, nil
		}
		return nil, worker.Failed("an earlier attempt of this send is under way, or was cut short and may have gone out; not sending it twice (remove %s from the outbox to send anyway)", keyFile)
	case err != nil:
		return nil, worker.Failed("record the send: %v", unwrapPath(err))
	}

	msg, err := m.compose(to, args, rec.MessageID)
	if err != nil {
		_ = m.outbox.root.Remove(keyFile)
		return nil, worker.Failed("compose the message: %v", err)
	}
	if err := m.deliver(ctx, call, to.Address, id, msg); err != nil {
		var re *schemas.ReplyError
		if errors.As(err, &re) || errors.Is(err, worker.ErrNoEgress) || errors.Is(err, errOutbox) {
			// Refused or failed before the message left: a retry may send.
			_ = m.outbox.root.Remove(keyFile)
			if re != nil {
				return nil, worker.Failed("send: %s", re.Message)
			}
			return nil, worker.Failed("send: %v", err)
		}
		// No answer: it may have gone. The record stays "sending".
		return nil, worker.Failed("send: %v; the message may have gone out, so a retry will not send it again", err)
	}
	rec.State = stateSent
	b, _ = json.Marshal(rec)
	if err := m.outbox.create(keyFile, b, false); err != nil {
		call.Log.Error("email: the message was sent but its record could not be updated", "err", unwrapPath(err))
	}
	call.Log.Info("email sent", "via", via, "message_id", rec.MessageID)
	return map[string]any{"message_id": rec.MessageID}, nil
}

var errOutbox = errors.New("outbox")

// messageName derives the name of a message (its file, its key record,
// the left part of its Message-ID) from the idempotency key of its call.
func messageName(key string) string {
	sum := sha256.Sum256([]byte("sluice email\x00" + key))
	return hex.EncodeToString(sum[:16])
}

func (m *mailbox) deliver(ctx context.Context, call *worker.Call, rcpt, id string, msg []byte) error {
	s := m.cfg.SMTP
	if s == nil {
		if err := m.outbox.create(id+".eml", msg, false); err != nil {
			return fmt.Errorf("%w: write %s.eml: %v", errOutbox, id, unwrapPath(err))
		}
		return nil
	}
	h := map[string]string{"Mail-From": m.cfg.Address, "Rcpt-To": rcpt}
	if s.Username != "" {
		h["Auth-Username"], h["Auth-Password"] = s.Username, s.Password
	}
	if s.insecurePlaintext {
		h[schemas.SMTPInsecurePlaintext] = "true"
	}
	resp, err := call.HTTP(ctx, schemas.EgressRequest{Method: "SMTP", URL: s.URL, Headers: h, Body: msg})
	if err != nil {
		return err
	}
	if resp.Status != 250 {
		return &schemas.ReplyError{Code: schemas.CodeFailed, Message: fmt.Sprintf("the broker answered status %d", resp.Status)}
	}
	return nil
}

// compose writes an RFC 5322 message: UTF-8 text, quoted-printable, the
// subject encoded where it needs to be.
func (m *mailbox) compose(to *mail.Address, args sendArgs, messageID string) ([]byte, error) {
	var h gomail.Header
	from := m.cfg.Address
	if from == "" {
		from = "sluice@localhost"
	}
	h.SetAddressList("From", []*gomail.Address{{Address: from}})
	h.SetAddressList("To", []*gomail.Address{{Name: oneLine(to.Name), Address: to.Address}})
	h.SetSubject(oneLine(args.Subject))
	h.SetDate(m.now())
	h.SetMessageID(messageID)
	h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	var buf bytes.Buffer
	w, err := gomail.CreateSingleInlineWriter(&buf, h)
	if err != nil {
		return nil, err
	}
	text := strings.ReplaceAll(strings.ReplaceAll(args.Body, "\r\n", "\n"), "\n", "\r\n")
	if _, err := io.WriteString(w, text); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (m *mailbox) domain() string {
	if _, d, ok := strings.Cut(m.cfg.Address, "@"); ok && d != "" {
		return d
	}
	return "localhost"
}

// oneLine keeps a header value on one line.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' }), " ")
}

// unwrapPath drops the path an os error carries: it names the state
// directory of this machine, which a reply need not show.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
