// Package calendar is the built-in calendar worker: list_events,
// free_slots and create_event on an iCalendar file (RFC 5545), the format
// every calendar application exports and most can subscribe to.
//
// Configuration (the worker's `config:` block, every key optional):
//
//	file:     the .ics file; default <state>/calendar/calendar.ics, created
//	          empty when missing. Relative paths are relative to the
//	          working directory (the directory of sluice.yaml).
//	owner:    the calendar owner's address, me@home.example. An event whose
//	          ORGANIZER is anyone else was written by them: its fields are
//	          labeled untrusted, with source calendar:<organizer>. With no
//	          owner, every event that names an organizer is.
//	timezone: an IANA zone for floating times and all-day events, and for
//	          the times the tools return; default the calendar's
//	          X-WR-TIMEZONE, else the worker's local zone.
//
// Recurring events (RRULE, RDATE, EXDATE, and RECURRENCE-ID overrides) are
// expanded with github.com/teambition/rrule-go. An override replaces an
// occurrence only when it names the same ORGANIZER as its series (none
// meaning the owner): an invite from a stranger that reuses the UID of the
// owner's series cannot cancel or move the owner's occurrence, and is read
// as an event of its own, labeled as the stranger's; rules that repeat more
// often than daily, which calendar applications do not write, are left out
// with a warning, since one that never matches would stall the worker.
// TZID parameters are honoured: IANA names from the zone database embedded
// in the binary (the worker reads nothing from disk once confined), other
// names from the file's VTIMEZONE rules. Cancelled events are left out;
// transparent events and invitations the owner declined do not make time
// busy.
//
// The file is opened once, before the worker is confined, and read and
// written through that descriptor: the confined worker needs no grant on
// its directory. create_event never rewrites what is there: it writes the
// new event in place of the last END:VCALENDAR line and appends that line
// again, then syncs, so a crash can cost at most the event being written.
// Replicas and other writers that take flock(2) on the file are
// serialized with it. An editor that saves by replacing the file leaves
// the worker holding the old one; calls then fail until the worker is
// restarted.
//
// create_event happens once per idempotency key: the new event's UID is
// derived from the key, and a retried call finds its event in the file.
package calendar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // TZIDs are resolved after the worker is confined
	"unicode/utf8"

	"github.com/emersion/go-ical"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// Limits of one call.
const (
	// MaxEvents is the most events list_events returns.
	MaxEvents = 200
	// MaxSlots is the most slots free_slots returns.
	MaxSlots = 500
	// MaxWindow is the longest from–to range a call may ask about.
	MaxWindow = 366 * 24 * time.Hour
	// maxText bounds each text field of an event in an output.
	maxText = 4096
	// outputBudget keeps a reply under the manifest's max_output.
	outputBudget = 900 << 10
)

const prodID = "-//Sluice//calendar worker//EN"

type config struct {
	File     string `json:"file"`
	Owner    string `json:"owner"`
	Timezone string `json:"timezone"`
}

func loadConfig(env worker.Env) (cfg config, def bool, zone *time.Location, err error) {
	if raw := bytes.TrimSpace(env.Config); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return cfg, false, nil, fmt.Errorf("calendar config: %w (keys are: file, owner, timezone)", err)
		}
	}
	if cfg.Owner != "" {
		a, err := mail.ParseAddress(cfg.Owner)
		if err != nil || a.Name != "" {
			return cfg, false, nil, errors.New("calendar config: owner must be an email address such as me@home.example")
		}
		cfg.Owner = strings.ToLower(a.Address)
	}
	if cfg.Timezone != "" {
		if zone, err = loadIANA(cfg.Timezone); err != nil {
			return cfg, false, nil, fmt.Errorf("calendar config: timezone %q is not an IANA time zone such as Europe/Lisbon", cfg.Timezone)
		}
	}
	if cfg.File == "" {
		if env.State == "" {
			return cfg, false, nil, errors.New("calendar config: no file and no state directory")
		}
		cfg.File, def = filepath.Join(env.State, "calendar", "calendar.ics"), true
	}
	if cfg.File, err = filepath.Abs(cfg.File); err != nil {
		return cfg, false, nil, fmt.Errorf("calendar config: file: %w", err)
	}
	return cfg, def, zone, nil
}

type calendar struct {
	cfg   config
	zone  *time.Location // configured, or nil
	store *store
	log   *slog.Logger
	now   func() time.Time
}

// New opens (creating it if needed) the calendar file and returns the
// worker's handlers. A file that does not parse is reported in the log
// and by every call until it is repaired.
func New(env worker.Env) (map[string]worker.Handler, error) {
	cfg, def, zone, err := loadConfig(env)
	if err != nil {
		return nil, err
	}
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The local zone is read from the system now, while the worker may
	// still read it.
	_ = time.Local.String()
	// Time zones named in events are looked up while serving calls: the
	// system's zone database stays readable (public data; time.LoadLocation
	// falls back on the embedded copy where there is none).
	if env.Keep != nil {
		if st, err := os.Stat(systemZoneinfo); err == nil && st.IsDir() {
			env.Keep.RO = append(env.Keep.RO, systemZoneinfo)
		}
	}
	s, err := openStore(cfg.File, def)
	if err != nil {
		return nil, err
	}
	c := &calendar{cfg: cfg, zone: zone, store: s, log: log, now: time.Now}
	if _, err := c.load(); err != nil {
		log.Error("calendar file is unusable until repaired", "err", err)
	}
	return map[string]worker.Handler{
		"list_events":  c.listEvents,
		"free_slots":   c.freeSlots,
		"create_event": c.createEvent,
	}, nil
}

var _ worker.Builtin = New

// systemZoneinfo is where time.LoadLocation looks first on Linux.
const systemZoneinfo = "/usr/share/zoneinfo"

// view is the calendar as of one read.
type view struct {
	cals  []*ical.Calendar
	zone  *time.Location // of floating times, and of the outputs
	zones *zones
}

func (c *calendar) load() (*view, error) {
	b, err := c.store.read()
	if err != nil {
		return nil, err
	}
	return c.parse(b)
}

func (c *calendar) parse(b []byte) (*view, error) {
	cals, err := decodeFile(b)
	if err != nil {
		return nil, fmt.Errorf("calendar %s does not parse as iCalendar (%v); repair it, the worker does not rewrite it", c.cfg.File, err)
	}
	zone := displayZone(c.zone, cals)
	return &view{cals: cals, zone: zone, zones: newZones(zone, cals, c.log)}, nil
}

func (c *calendar) reader(v *view) *reader {
	return &reader{owner: c.cfg.Owner, zones: v.zones, log: c.log}
}

// window reads the from and to arguments.
func window(fromArg, toArg string, zone *time.Location) (from, to time.Time, err error) {
	if from, _, err = parseWhen("from", fromArg, zone); err != nil {
		return
	}
	if to, _, err = parseWhen("to", toArg, zone); err != nil {
		return
	}
	if !to.After(from) {
		return from, to, worker.BadArguments("argument to must be later than from")
	}
	if to.Sub(from) > MaxWindow {
		return from, to, worker.BadArguments("arguments from and to span more than %d days; ask for a shorter range", int(MaxWindow.Hours()/24))
	}
	return from, to, nil
}

// parseWhen reads an RFC 3339 date-time, or a date (midnight in zone).
func parseWhen(name, s string, zone *time.Location) (time.Time, bool, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, false, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, zone); err == nil {
		return t, true, nil
	}
	return time.Time{}, false, worker.BadArguments("argument %s: want an RFC 3339 date-time such as 2025-03-10T09:00:00+01:00, or a date such as 2025-03-10", name)
}

func format(t time.Time, zone *time.Location) string {
	return t.In(zone).Format(time.RFC3339)
}

type eventOut struct {
	UID         string `json:"uid"`
	Title       string `json:"title"`
	Start       string `json:"start"`
	End         string `json:"end"`
	AllDay      bool   `json:"all_day"`
	Organizer   string `json:"organizer"`
	Location    string `json:"location"`
	Description string `json:"description"`
}

func (c *calendar) listEvents(ctx context.Context, call *worker.Call) (any, error) {
	var args struct {
		From string `json:"from"`
		To   string `json:"to"`
	}
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	v, _, _, ins, err := c.occurrences(ctx, args.From, args.To)
	if err != nil {
		return nil, err
	}
	if len(ins) > MaxEvents {
		return nil, worker.Failed("%d events between from and to; a call returns at most %d: ask for a shorter range", len(ins), MaxEvents)
	}
	events := make([]eventOut, 0, len(ins))
	labels := map[string]ifc.Label{}
	size := 0
	for i, in := range ins {
		ev := eventOut{
			UID: in.uid, Title: clip(in.title), Start: format(in.start, v.zone), End: format(in.end, v.zone),
			AllDay: in.allDay, Organizer: in.organizer, Location: clip(in.location), Description: clip(in.description),
		}
		b, _ := json.Marshal(ev)
		if size += len(b) + 1; size > outputBudget {
			return nil, worker.Failed("the events between from and to are more than a reply can hold; ask for a shorter range")
		}
		events = append(events, ev)
		if in.foreign {
			labels["events."+strconv.Itoa(i)] = ifc.UntrustedFrom("calendar:" + in.organizer)
		}
	}
	return labeled(map[string]any{"events": events}, labels), nil
}

func labeled(out any, labels map[string]ifc.Label) any {
	if len(labels) == 0 {
		return out
	}
	return worker.Labeled{Output: out, Labels: labels}
}

type slotOut struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// occurrences reads the calendar and returns the occurrences of its events
// between the from and to arguments, with the window and the view.
func (c *calendar) occurrences(ctx context.Context, fromArg, toArg string) (*view, time.Time, time.Time, []instance, error) {
	var zero time.Time
	v, err := c.load()
	if err != nil {
		return nil, zero, zero, nil, worker.Failed("%v", err)
	}
	from, to, err := window(fromArg, toArg, v.zone)
	if err != nil {
		return nil, zero, zero, nil, err
	}
	ins, err := c.reader(v).between(v.cals, from, to)
	if err != nil {
		return nil, zero, zero, nil, worker.Failed("%v", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, zero, zero, nil, err
	}
	return v, from, to, ins, nil
}

// freeSlots returns the gaps of at least minutes between the busy
// occurrences in [from, to). Someone else's event shapes every slot (it
// can remove one, split one, or move which one comes first), so when one
// is busy in the window the whole list is labeled untrusted, with the
// organizers as sources.
func (c *calendar) freeSlots(ctx context.Context, call *worker.Call) (any, error) {
	var args struct {
		From    string   `json:"from"`
		To      string   `json:"to"`
		Minutes *float64 `json:"minutes"`
	}
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	if args.Minutes == nil {
		return nil, worker.BadArguments("argument minutes is required")
	}
	if m := *args.Minutes; m != float64(int64(m)) || m < 1 || m > 7*24*60 {
		return nil, worker.BadArguments("argument minutes must be a whole number from 1 to %d", 7*24*60)
	}
	need := time.Duration(*args.Minutes) * time.Minute
	v, from, to, ins, err := c.occurrences(ctx, args.From, args.To)
	if err != nil {
		return nil, err
	}
	var sources []string
	slots := []slotOut{}
	cursor := from
	for _, in := range ins {
		if !in.busy || !in.end.After(in.start) {
			continue
		}
		if in.foreign {
			sources = append(sources, "calendar:"+in.organizer)
		}
		if in.start.Sub(cursor) >= need {
			slots = append(slots, slotOut{Start: format(cursor, v.zone), End: format(in.start, v.zone)})
		}
		if in.end.After(cursor) {
			cursor = in.end
		}
	}
	if to.Sub(cursor) >= need {
		slots = append(slots, slotOut{Start: format(cursor, v.zone), End: format(to, v.zone)})
	}
	if len(slots) > MaxSlots {
		return nil, worker.Failed("%d free slots between from and to; a call returns at most %d: ask for a shorter range or longer slots", len(slots), MaxSlots)
	}
	out := map[string]any{"slots": slots}
	if len(sources) > 0 {
		return worker.Labeled{Output: out, Labels: map[string]ifc.Label{"slots": ifc.UntrustedFrom(sources...)}}, nil
	}
	return out, nil
}

func (c *calendar) createEvent(ctx context.Context, call *worker.Call) (any, error) {
	var args struct {
		Title       string   `json:"title"`
		Start       string   `json:"start"`
		End         string   `json:"end"`
		Attendees   []string `json:"attendees"`
		Description string   `json:"description"`
		Location    string   `json:"location"`
	}
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	if strings.TrimSpace(args.Title) == "" {
		return nil, worker.BadArguments("argument title is required")
	}
	if call.IdempotencyKey == "" {
		return nil, worker.Failed("the call has no idempotency key; creating an event needs one")
	}
	attendees := make([]string, 0, len(args.Attendees))
	for i, a := range args.Attendees {
		addr, err := mail.ParseAddress(a)
		if err != nil || strings.ContainsAny(addr.Address, "\r\n\",;:") {
			return nil, worker.BadArguments("argument attendees[%d]: want an email address such as ana@x.example", i)
		}
		attendees = append(attendees, strings.ToLower(addr.Address))
	}
	// The zone of dates given without a time is the calendar's; its file is
	// read for X-WR-TIMEZONE under the write lock below.
	var out string
	written := false
	err := c.store.update(func(cur []byte) (int64, []byte, error) {
		v, err := c.parse(cur)
		if err != nil {
			return 0, nil, err
		}
		start, startDate, err := parseWhen("start", args.Start, v.zone)
		if err != nil {
			return 0, nil, err
		}
		end, endDate, err := parseWhen("end", args.End, v.zone)
		if err != nil {
			return 0, nil, err
		}
		if startDate != endDate {
			return 0, nil, worker.BadArguments("arguments start and end must both be dates or both be date-times")
		}
		if end.Before(start) {
			return 0, nil, worker.BadArguments("argument end is before start")
		}
		uid := eventUID(call.IdempotencyKey)
		if prev := findEvent(v.cals, uid); prev != nil {
			// A retry of a call that already wrote its event.
			if text(prev.Props.Get(ical.PropSummary)) != cleanText(args.Title) {
				return 0, nil, worker.Failed("idempotency key reused with different arguments")
			}
			out = uid
			return 0, nil, nil
		}
		ev := ical.NewEvent()
		ev.Props.SetText(ical.PropUID, uid)
		now := c.now().UTC().Truncate(time.Second)
		ev.Props.SetDateTime(ical.PropDateTimeStamp, now)
		ev.Props.SetDateTime(ical.PropCreated, now)
		ev.Props.SetText(ical.PropSummary, cleanText(args.Title))
		if startDate {
			// Dates name whole days, the end one included: RFC 5545's
			// DTEND is the day after.
			ev.Props.SetDate(ical.PropDateTimeStart, start)
			ev.Props.SetDate(ical.PropDateTimeEnd, end.AddDate(0, 0, 1))
		} else {
			ev.Props.SetDateTime(ical.PropDateTimeStart, start.UTC())
			if end.After(start) {
				ev.Props.SetDateTime(ical.PropDateTimeEnd, end.UTC())
			}
		}
		if args.Description != "" {
			ev.Props.SetText(ical.PropDescription, cleanText(args.Description))
		}
		if args.Location != "" {
			ev.Props.SetText(ical.PropLocation, cleanText(args.Location))
		}
		if c.cfg.Owner != "" {
			p := ical.NewProp(ical.PropOrganizer)
			p.Value = "mailto:" + c.cfg.Owner
			ev.Props.Set(p)
		}
		for _, a := range attendees {
			p := ical.NewProp(ical.PropAttendee)
			p.Params.Set(ical.ParamParticipationStatus, "NEEDS-ACTION")
			p.Params.Set(ical.ParamRSVP, "TRUE")
			p.Value = "mailto:" + a
			ev.Props.Add(p)
		}
		off, data, err := insertion(cur, ev)
		if err != nil {
			return 0, nil, err
		}
		out, written = uid, true
		return off, data, nil
	})
	if err != nil {
		var re *schemas.ReplyError
		if errors.As(err, &re) {
			return nil, re
		}
		return nil, worker.Failed("%v", err)
	}
	if written {
		call.Log.Info("calendar event written", "uid", out)
	}
	return map[string]any{"uid": out}, nil
}

// eventUID derives the UID of the event a call creates from its
// idempotency key, so that a retry finds it.
func eventUID(key string) string {
	sum := sha256.Sum256([]byte("sluice calendar event\x00" + key))
	return hex.EncodeToString(sum[:16]) + "@sluice"
}

func findEvent(cals []*ical.Calendar, uid string) *ical.Component {
	for _, c := range cals {
		for _, e := range c.Children {
			if e.Name == ical.CompEvent && propValue(e, ical.PropUID) == uid {
				return e
			}
		}
	}
	return nil
}

// cleanText keeps text in one form a calendar file can hold: line breaks
// as \n, no other control characters.
func cleanText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	cut := maxText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
