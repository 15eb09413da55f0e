package calendar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"
)

// maxSteps bounds the occurrences computed for one recurring event in one
// call, so that FREQ=SECONDLY since 1970 cannot stall the worker.
const maxSteps = 200_000

// instance is one occurrence of an event.
type instance struct {
	uid, title, description, location string
	// organizer is the organizer's address, lowercased, without
	// "mailto:"; "" when the event names none.
	organizer  string
	start, end time.Time
	allDay     bool
	// foreign is set when someone other than the owner organized the
	// event: its content is theirs.
	foreign bool
	// busy is false for transparent events and for invitations the owner
	// declined.
	busy bool
}

// decodeFile reads every VCALENDAR object of an iCalendar stream. The
// decoder panics on some malformed lines; that is reported as an error.
func decodeFile(b []byte) (cals []*ical.Calendar, err error) {
	defer func() {
		if r := recover(); r != nil {
			cals, err = nil, errors.New("malformed iCalendar content")
		}
	}()
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	dec := ical.NewDecoder(bytes.NewReader(b))
	for {
		cal, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			if len(cals) == 0 {
				return nil, errors.New("no VCALENDAR object")
			}
			return cals, nil
		}
		if err != nil {
			return nil, err
		}
		cals = append(cals, cal)
	}
}

// reader turns calendar objects into instances.
type reader struct {
	owner string
	zones *zones
	log   *slog.Logger
}

// displayZone is the configured zone, else the calendar's X-WR-TIMEZONE,
// else the worker's local zone.
func displayZone(configured *time.Location, cals []*ical.Calendar) *time.Location {
	if configured != nil {
		return configured
	}
	for _, c := range cals {
		if p := c.Props.Get("X-WR-TIMEZONE"); p != nil {
			if loc, err := loadIANA(strings.TrimSpace(p.Value)); err == nil {
				return loc
			}
		}
	}
	return time.Local
}

// between returns the occurrences of every event that overlap [from, to),
// sorted by start. An occurrence of no duration counts when it starts in
// the window.
func (r *reader) between(cals []*ical.Calendar, from, to time.Time) ([]instance, error) {
	var events []*ical.Component
	// Instances moved or cancelled by a RECURRENCE-ID override, by series
	// (seriesKey): an override replaces an occurrence of the series with
	// its UID and its organizer only. Anyone can send an invite that
	// reuses the UID of someone else's series; only the series' organizer
	// may move or cancel its occurrences (RFC 5546), so an override from
	// anyone else is read as an event of its own, labeled as its
	// organizer's, and the occurrence stays where it was.
	overridden := map[string]map[int64]bool{}
	for _, c := range cals {
		for _, e := range c.Children {
			if e.Name != ical.CompEvent {
				continue
			}
			events = append(events, e)
			rid := e.Props.Get(ical.PropRecurrenceID)
			if rid == nil {
				continue
			}
			ts, _, err := r.zones.times(rid)
			if err != nil {
				continue
			}
			key := r.seriesKey(e)
			if overridden[key] == nil {
				overridden[key] = map[int64]bool{}
			}
			overridden[key][ts[0].Unix()] = true
		}
	}
	var out []instance
	for i, e := range events {
		got, err := r.expand(e, from, to, overridden)
		if err != nil {
			// One broken event does not hide the others.
			r.log.Warn("calendar: skipping an event that does not parse", "event", i+1, "err", err)
			continue
		}
		out = append(out, got...)
	}
	slices.SortStableFunc(out, func(a, b instance) int {
		if c := a.start.Compare(b.start); c != 0 {
			return c
		}
		if c := a.end.Compare(b.end); c != 0 {
			return c
		}
		return strings.Compare(a.uid, b.uid)
	})
	return out, nil
}

func (r *reader) expand(e *ical.Component, from, to time.Time, overridden map[string]map[int64]bool) ([]instance, error) {
	if strings.EqualFold(propValue(e, ical.PropStatus), "CANCELLED") {
		return nil, nil
	}
	sp := e.Props.Get(ical.PropDateTimeStart)
	if sp == nil {
		return nil, errors.New("no DTSTART")
	}
	starts, allDay, err := r.zones.times(sp)
	if err != nil {
		return nil, err
	}
	start := starts[0]
	// The length of each occurrence: whole days for dates, so that a day
	// stays a day across a change of offset.
	var days int
	var dur time.Duration
	switch {
	case e.Props.Get(ical.PropDateTimeEnd) != nil:
		ends, _, err := r.zones.times(e.Props.Get(ical.PropDateTimeEnd))
		if err != nil {
			return nil, err
		}
		if allDay {
			days = int(ends[0].Sub(start).Round(24*time.Hour) / (24 * time.Hour))
		} else {
			dur = ends[0].Sub(start)
		}
	case e.Props.Get(ical.PropDuration) != nil:
		d, err := e.Props.Get(ical.PropDuration).Duration()
		if err != nil {
			return nil, fmt.Errorf("DURATION: %w", err)
		}
		if allDay {
			days = int(d / (24 * time.Hour))
		} else {
			dur = d
		}
	case allDay:
		days = 1
	}
	if dur < 0 || days < 0 {
		return nil, errors.New("DTEND before DTSTART")
	}
	end := func(s time.Time) time.Time {
		if allDay {
			return s.AddDate(0, 0, days)
		}
		return s.Add(dur)
	}
	base := r.instance(e)
	base.allDay = allDay
	overlaps := func(s time.Time) bool {
		en := end(s)
		if en.Equal(s) {
			return !s.Before(from) && s.Before(to)
		}
		return s.Before(to) && en.After(from)
	}
	add := func(out []instance, s time.Time) []instance {
		in := base
		in.start, in.end = s, end(s)
		return append(out, in)
	}

	rrules := e.Props.Values(ical.PropRecurrenceRule)
	rdates := e.Props.Values(ical.PropRecurrenceDates)
	if e.Props.Get(ical.PropRecurrenceID) != nil || (len(rrules) == 0 && len(rdates) == 0) {
		if overlaps(start) {
			return add(nil, start), nil
		}
		return nil, nil
	}

	// A recurring event: DTSTART, each RRULE and each RDATE, less EXDATEs
	// and the occurrences that an override with the same UID replaces.
	var exdates []time.Time
	for i := range e.Props.Values(ical.PropExceptionDates) {
		ts, _, err := r.zones.times(&e.Props.Values(ical.PropExceptionDates)[i])
		if err != nil {
			return nil, err
		}
		exdates = append(exdates, ts...)
	}
	set := &rrule.Set{}
	set.DTStart(start)
	set.RDate(start)
	for i := range rdates {
		ts, _, err := r.zones.times(&rdates[i])
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			set.RDate(t)
		}
	}
	for _, ex := range exdates {
		set.ExDate(ex)
	}
	var rules []*rrule.RRule
	for _, rp := range rrules {
		opt, err := rrule.StrToROptionInLocation(rp.Value, start.Location())
		if err != nil {
			return nil, fmt.Errorf("RRULE: %w", err)
		}
		if opt.Freq == rrule.HOURLY || opt.Freq == rrule.MINUTELY || opt.Freq == rrule.SECONDLY {
			// rrule-go steps through every period whether or not it
			// matches: a rule that never matches, from a DTSTART long ago,
			// would keep the worker busy for seconds or centuries. Calendar
			// applications do not write these.
			return nil, errors.New("RRULE: recurrence more frequent than daily is not supported")
		}
		opt.Dtstart = start
		// Nothing at or after to is wanted; bounding the rule also bounds
		// the search for a rule that never matches.
		if opt.Until.IsZero() || opt.Until.After(to) {
			opt.Until = to
		}
		rule, err := rrule.NewRRule(*opt)
		if err != nil {
			return nil, fmt.Errorf("RRULE: %w", err)
		}
		rules = append(rules, rule)
	}
	// rrule.Set holds one RRULE (RFC 5545 deprecates more); further ones
	// are iterated on their own and merged.
	iters := []func() (time.Time, bool){}
	if len(rules) > 0 {
		set.RRule(rules[0])
	}
	iters = append(iters, set.Iterator())
	for _, rule := range rules[min(1, len(rules)):] {
		extra := &rrule.Set{}
		extra.RRule(rule)
		for _, ex := range exdates {
			extra.ExDate(ex)
		}
		iters = append(iters, extra.Iterator())
	}
	skip := overridden[r.seriesKey(e)]
	seen := map[int64]bool{}
	var out []instance
	for _, next := range iters {
		for steps := 0; ; steps++ {
			if steps == maxSteps {
				r.log.Warn("calendar: a recurring event has too many occurrences before the window; the rest are left out", "uid", base.uid)
				break
			}
			s, ok := next()
			if !ok || !s.Before(to) {
				break
			}
			if seen[s.Unix()] || skip[s.Unix()] {
				continue
			}
			seen[s.Unix()] = true
			if overlaps(s) {
				out = add(out, s)
			}
		}
	}
	return out, nil
}

// seriesKey names the series e belongs to: its UID and its organizer, an
// event that names none being the owner's, as everywhere else.
func (r *reader) seriesKey(e *ical.Component) string {
	org := address(propValue(e, ical.PropOrganizer))
	if org == "" {
		org = r.owner
	}
	return propValue(e, ical.PropUID) + "\x00" + org
}

// instance fills what every occurrence of e shares.
func (r *reader) instance(e *ical.Component) instance {
	in := instance{
		uid:         propValue(e, ical.PropUID),
		title:       text(e.Props.Get(ical.PropSummary)),
		description: text(e.Props.Get(ical.PropDescription)),
		location:    text(e.Props.Get(ical.PropLocation)),
		organizer:   address(propValue(e, ical.PropOrganizer)),
		busy:        !strings.EqualFold(propValue(e, ical.PropTransparency), "TRANSPARENT"),
	}
	in.foreign = in.organizer != "" && in.organizer != r.owner
	if in.foreign && r.owner != "" {
		for _, a := range e.Props.Values(ical.PropAttendee) {
			if address(a.Value) == r.owner && strings.EqualFold(a.Params.Get(ical.ParamParticipationStatus), "DECLINED") {
				in.busy = false
			}
		}
	}
	return in
}

func propValue(c *ical.Component, name string) string {
	if p := c.Props.Get(name); p != nil {
		return p.Value
	}
	return ""
}

// address reads a calendar user address: "mailto:Bob@X.example" is
// "bob@x.example".
func address(v string) string {
	v = strings.TrimSpace(v)
	if len(v) >= 7 && strings.EqualFold(v[:7], "mailto:") {
		v = v[7:]
	}
	return strings.ToLower(v)
}

// text unescapes a TEXT value (RFC 5545 §3.3.11), keeping what an unknown
// escape stands for rather than failing on it.
func text(p *ical.Prop) string {
	if p == nil {
		return ""
	}
	v := p.Value
	if !strings.Contains(v, `\`) {
		return v
	}
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\\' || i+1 == len(v) {
			sb.WriteByte(c)
			continue
		}
		i++
		switch v[i] {
		case 'n', 'N':
			sb.WriteByte('\n')
		default:
			sb.WriteByte(v[i])
		}
	}
	return sb.String()
}
