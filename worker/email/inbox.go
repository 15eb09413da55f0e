package email

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // ISO-8859-*, Windows-125x, Shift_JIS, GB18030, …
	gomail "github.com/emersion/go-message/mail"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/worker"
)

// Limits of inbox.
const (
	DefaultLimit = 20
	MaxLimit     = 100
	// MaxBody bounds the text of one message in the output.
	MaxBody = 16 << 10
	// maxMessage bounds what is read of one message file.
	maxMessage = 16 << 20
	// outputBudget keeps the whole reply under the worker's max_output.
	outputBudget = 900 << 10
)

type messageOut struct {
	ID      string `json:"id"`
	From    string `json:"from"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
	Date    string `json:"date"`
}

type entry struct {
	id, path string
	mtime    time.Time
}

func (m *mailbox) inbox(ctx context.Context, call *worker.Call) (any, error) {
	var args struct {
		Limit *float64 `json:"limit"`
	}
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	limit := DefaultLimit
	if args.Limit != nil {
		l := *args.Limit
		if l != float64(int(l)) || l < 1 || l > MaxLimit {
			return nil, worker.BadArguments("argument limit must be a whole number from 1 to %d", MaxLimit)
		}
		limit = int(l)
	}
	entries, err := m.list()
	if err != nil {
		return nil, worker.Failed("%v", err)
	}
	msgs := []messageOut{}
	labels := map[string]ifc.Label{}
	size := 0
	for _, e := range entries {
		if len(msgs) == limit {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		msg, sender, trusted, err := m.read(e)
		if err != nil {
			// A file that is not a message is skipped, not fatal.
			call.Log.Warn("email: skipping a message that does not parse", "id", e.id, "err", err)
			continue
		}
		b, _ := json.Marshal(msg)
		if size += len(b) + 1; size > outputBudget {
			break
		}
		if !trusted {
			labels["messages."+strconv.Itoa(len(msgs))] = ifc.UntrustedFrom("email:" + sender)
		}
		msgs = append(msgs, msg)
	}
	out := map[string]any{"messages": msgs}
	if len(labels) > 0 {
		return worker.Labeled{Output: out, Labels: labels}, nil
	}
	return out, nil
}

// list returns the messages of new/ and cur/, newest delivery first.
func (m *mailbox) list() ([]entry, error) {
	var out []entry
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(m.cfg.Maildir, sub)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("read maildir: %w", err)
		}
		for _, de := range ents {
			name := de.Name()
			if strings.HasPrefix(name, ".") || !de.Type().IsRegular() {
				continue
			}
			info, err := de.Info()
			if err != nil {
				continue
			}
			id, _, _ := strings.Cut(name, ":")
			out = append(out, entry{id: id, path: filepath.Join(dir, name), mtime: info.ModTime()})
		}
	}
	slices.SortStableFunc(out, func(a, b entry) int {
		if c := b.mtime.Compare(a.mtime); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	return out, nil
}

// read parses one message. trusted says whether it comes from the
// mailbox's own address (and, with authserv_id, was verified to).
func (m *mailbox) read(e entry) (msg messageOut, sender string, trusted bool, err error) {
	f, err := os.Open(e.path)
	if err != nil {
		return msg, "", false, err
	}
	defer f.Close()
	ent, err := message.Read(io.LimitReader(f, maxMessage))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return msg, "", false, err
	}
	h := gomail.Header{Header: ent.Header}
	msg.ID = e.id
	if subj, err := h.Subject(); err == nil {
		msg.Subject = clean(subj)
	} else {
		msg.Subject = clean(h.Get("Subject"))
	}
	if from, err := h.AddressList("From"); err == nil && len(from) > 0 {
		sender = strings.ToLower(from[0].Address)
	}
	msg.From = sender
	date, derr := h.Date()
	if derr != nil || date.IsZero() {
		date = e.mtime
	}
	msg.Date = date.Format(time.RFC3339)
	msg.Body = clip(body(ent))
	trusted = m.cfg.Address != "" && sender == m.cfg.Address && m.verified(h)
	if sender == "" {
		sender = "unknown"
	}
	return msg, sender, trusted, nil
}

// verified reports whether mail claiming to be from the mailbox's address
// was authenticated by the configured server. Without authserv_id there is
// nothing to check.
//
// Only the topmost Authentication-Results header that names the server
// counts: the server adds its verdict above every header the message
// arrived with, so a verdict written further down under the server's name
// came from the sender (RFC 8601, section 5), and is not believed even when
// it says pass.
func (m *mailbox) verified(h gomail.Header) bool {
	id := m.cfg.AuthservID
	if id == "" {
		return true
	}
	_, domain, _ := strings.Cut(m.cfg.Address, "@")
	for _, v := range h.Values("Authentication-Results") {
		parts := strings.Split(v, ";")
		serv := strings.Fields(parts[0])
		if len(serv) == 0 || !strings.EqualFold(serv[0], id) {
			continue
		}
		for _, p := range parts[1:] {
			f := strings.Fields(strings.ToLower(p))
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "dmarc=pass":
				return true
			case "dkim=pass":
				if slices.Contains(f, "header.d="+domain) || slices.Contains(f, "header.i=@"+domain) {
					return true
				}
			}
		}
		return false // the server's own verdict, and it is not a pass
	}
	return false
}

// body returns the message's text: the first text/plain part that is not
// an attachment, else the first text/html part as text.
func body(e *message.Entity) string {
	var plain, html string
	var havePlain, haveHTML bool
	_ = e.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return nil
		}
		t, _, _ := part.Header.ContentType()
		if t == "" {
			t = "text/plain"
		}
		if strings.HasPrefix(t, "multipart/") {
			return nil
		}
		if disp, _, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition")); disp == "attachment" {
			return nil
		}
		switch {
		case t == "text/plain" && !havePlain:
			plain, havePlain = readText(part.Body), true
		case t == "text/html" && !haveHTML:
			html, haveHTML = readText(part.Body), true
		}
		return nil
	})
	switch {
	case havePlain:
		return clean(plain)
	case haveHTML:
		return clean(htmlText(html))
	}
	return ""
}

func readText(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4*MaxBody))
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// clean normalizes line endings and drops control characters other than
// newlines and tabs.
func clean(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

func clip(s string) string {
	if len(s) <= MaxBody {
		return s
	}
	cut := MaxBody
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "\n[…]"
}
