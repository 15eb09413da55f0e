package calendar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/emersion/go-ical"

	"github.com/sluicehq/sluice/worker"
)

// insertion returns where to write the new event ev into the file cur,
// and what: the event, then the file's last END:VCALENDAR line and what
// follows it, in the file's line endings. An empty file gets a whole
// calendar.
func insertion(cur []byte, ev *ical.Event) (int64, []byte, error) {
	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropVersion, "2.0")
	cal.Props.SetText(ical.PropProductID, prodID)
	cal.Children = append(cal.Children, ev.Component)
	var buf bytes.Buffer
	if err := ical.NewEncoder(&buf).Encode(cal); err != nil {
		return 0, nil, fmt.Errorf("encode the event: %w", err)
	}
	whole := fold(buf.Bytes())
	if len(bytes.TrimSpace(cur)) == 0 {
		return 0, whole, nil
	}
	begin := bytes.Index(whole, []byte("BEGIN:VEVENT\r\n"))
	endTag := []byte("END:VEVENT\r\n")
	end := bytes.LastIndex(whole, endTag)
	if begin < 0 || end < 0 {
		return 0, nil, errors.New("encode the event: no VEVENT in the output")
	}
	event := whole[begin : end+len(endTag)]
	off, crlf, ok := lastEnd(cur)
	if !ok {
		return 0, nil, errors.New("the calendar file has no END:VCALENDAR line")
	}
	if !crlf {
		event = bytes.ReplaceAll(event, []byte("\r\n"), []byte("\n"))
	}
	data := append(append([]byte{}, event...), cur[off:]...)
	return int64(off), data, nil
}

// lastEnd finds the start of the last END:VCALENDAR line, and whether it
// ends in CRLF.
func lastEnd(b []byte) (off int, crlf, ok bool) {
	start := 0
	for start < len(b) {
		nl := bytes.IndexByte(b[start:], '\n')
		line := b[start:]
		next := len(b)
		if nl >= 0 {
			line, next = b[start:start+nl+1], start+nl+1
		}
		if bytes.EqualFold(bytes.TrimSpace(line), []byte("END:VCALENDAR")) {
			off, crlf, ok = start, bytes.HasSuffix(line, []byte("\r\n")), true
		}
		start = next
	}
	return off, crlf || !ok, ok
}

// fold splits content lines longer than 75 octets (RFC 5545 §3.1), never
// inside a UTF-8 sequence.
func fold(b []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(b, []byte("\r\n")) {
		body := bytes.TrimSuffix(line, []byte("\r\n"))
		limit := 75
		for len(body) > limit {
			cut := limit
			for cut > 0 && !utf8.RuneStart(body[cut]) {
				cut--
			}
			out.Write(body[:cut])
			out.WriteString("\r\n ")
			body = body[cut:]
			limit = 74 // the leading space counts
		}
		out.Write(body)
		if bytes.HasSuffix(line, []byte("\r\n")) {
			out.WriteString("\r\n")
		}
	}
	return out.Bytes()
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
