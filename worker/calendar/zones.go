package calendar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"
)

const (
	dateLayout     = "20060102"
	dateTimeLayout = "20060102T150405"
)

// zones resolves the TZID parameters of one calendar file. A TZID is, in
// order: the IANA zone its VTIMEZONE names in X-LIC-LOCATION; an IANA zone
// of that name (the Go runtime's embedded database, so nothing is read from
// disk once the worker is confined); a Mozilla-style "/vendor/.../Area/City"
// whose tail is an IANA zone; and else the rules of its VTIMEZONE, as
// Outlook writes them for zones named "W. Europe Standard Time". A TZID that
// is none of these is read in the calendar's own zone, with a warning.
type zones struct {
	// local is the zone of floating times and dates.
	local *time.Location
	defs  map[string]*ical.Component
	cache map[string]*time.Location
	log   *slog.Logger
}

func newZones(local *time.Location, cals []*ical.Calendar, log *slog.Logger) *zones {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	z := &zones{local: local, defs: map[string]*ical.Component{}, cache: map[string]*time.Location{}, log: log}
	for _, c := range cals {
		for _, child := range c.Children {
			if child.Name != ical.CompTimezone {
				continue
			}
			if id := child.Props.Get(ical.PropTimezoneID); id != nil && id.Value != "" {
				z.defs[id.Value] = child
			}
		}
	}
	return z
}

func (z *zones) lookup(tzid string) *time.Location {
	if loc, ok := z.cache[tzid]; ok {
		return loc
	}
	loc, err := z.resolve(tzid)
	if err != nil {
		z.log.Warn("calendar: time zone not understood; reading its times in the calendar's zone",
			"tzid", tzid, "zone", z.local.String(), "err", err)
		loc = z.local
	}
	z.cache[tzid] = loc
	return loc
}

func (z *zones) resolve(tzid string) (*time.Location, error) {
	def := z.defs[tzid]
	if def != nil {
		if p := def.Props.Get("X-LIC-LOCATION"); p != nil {
			if loc, err := loadIANA(p.Value); err == nil {
				return loc, nil
			}
		}
	}
	if loc, err := loadIANA(tzid); err == nil {
		return loc, nil
	}
	// "/mozilla.org/20070129_1/Europe/Berlin", "/citadel.org/…/America/New_York"
	if parts := strings.Split(strings.Trim(tzid, "/"), "/"); len(parts) > 2 {
		for i := 1; i < len(parts)-1; i++ {
			if loc, err := loadIANA(strings.Join(parts[i:], "/")); err == nil {
				return loc, nil
			}
		}
	}
	if def == nil {
		return nil, errors.New("not an IANA zone, and the file has no VTIMEZONE for it")
	}
	return vtimezone(tzid, def)
}

func loadIANA(name string) (*time.Location, error) {
	if name == "" || strings.EqualFold(name, "local") {
		return nil, errors.New("no zone name")
	}
	return time.LoadLocation(name)
}

// times parses a DATE or DATE-TIME property, or the start of each PERIOD,
// with every value of a comma-separated list. date reports VALUE=DATE.
func (z *zones) times(p *ical.Prop) (ts []time.Time, date bool, err error) {
	loc := z.local
	if id := p.Params.Get(ical.ParamTimezoneID); id != "" {
		loc = z.lookup(id)
	}
	vt := strings.ToUpper(p.Params.Get(ical.ParamValue))
	for _, v := range strings.Split(p.Value, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if start, _, ok := strings.Cut(v, "/"); ok {
			v = start // PERIOD: start/end or start/duration
		}
		t, isDate, err := parseTime(v, loc, vt == "DATE")
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", p.Name, err)
		}
		date = isDate
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return nil, false, fmt.Errorf("%s: no value", p.Name)
	}
	return ts, date, nil
}

// parseTime reads one DATE (midnight in loc) or DATE-TIME value: UTC when
// it ends in Z, else in loc.
func parseTime(v string, loc *time.Location, date bool) (time.Time, bool, error) {
	switch {
	case date || len(v) == len(dateLayout):
		t, err := time.ParseInLocation(dateLayout, v, loc)
		if err != nil {
			return t, true, errors.New("not a date")
		}
		return t, true, nil
	case strings.HasSuffix(v, "Z") || strings.HasSuffix(v, "z"):
		t, err := time.ParseInLocation(dateTimeLayout, v[:len(v)-1], time.UTC)
		if err != nil {
			return t, false, errors.New("not a date-time")
		}
		return t, false, nil
	}
	t, err := time.ParseInLocation(dateTimeLayout, v, loc)
	if err != nil {
		return t, false, errors.New("not a date-time")
	}
	return t, false, nil
}

// Transitions of a VTIMEZONE are computed from its first onset up to this
// year; later instants keep the last offset.
const lastZoneYear = 2100

type observance struct {
	offset int // seconds east of UTC
	dst    bool
	name   string
}

type transition struct {
	at  int64 // Unix seconds
	obs observance
}

// vtimezone builds a location from the STANDARD and DAYLIGHT observances
// of a VTIMEZONE (RFC 5545 §3.6.5): each onset is a local time in the
// offset in force before it (TZOFFSETFROM), repeated by its RRULE and
// RDATEs, after which TZOFFSETTO applies.
func vtimezone(tzid string, def *ical.Component) (*time.Location, error) {
	var trans []transition
	// The offset before the earliest onset is that onset's TZOFFSETFROM.
	var before observance
	firstAt, found := int64(0), false
	last := time.Date(lastZoneYear, 12, 31, 0, 0, 0, 0, time.UTC)
	for _, c := range def.Children {
		if c.Name != ical.CompTimezoneStandard && c.Name != ical.CompTimezoneDaylight {
			continue
		}
		from, err := utcOffset(c.Props.Get(ical.PropTimezoneOffsetFrom))
		if err != nil {
			return nil, fmt.Errorf("TZOFFSETFROM: %w", err)
		}
		to, err := utcOffset(c.Props.Get(ical.PropTimezoneOffsetTo))
		if err != nil {
			return nil, fmt.Errorf("TZOFFSETTO: %w", err)
		}
		obs := observance{offset: to, dst: c.Name == ical.CompTimezoneDaylight}
		if n := c.Props.Get(ical.PropTimezoneName); n != nil {
			obs.name = n.Value
		}
		p := c.Props.Get(ical.PropDateTimeStart)
		if p == nil {
			return nil, errors.New("an observance has no DTSTART")
		}
		// Onsets are local times: compute them as if in UTC, then shift.
		start, _, err := parseTime(strings.TrimSuffix(p.Value, "Z"), time.UTC, false)
		if err != nil {
			return nil, fmt.Errorf("DTSTART: %w", err)
		}
		onsets := []time.Time{start}
		for _, rp := range c.Props.Values(ical.PropRecurrenceRule) {
			opt, err := rrule.StrToROptionInLocation(rp.Value, time.UTC)
			if err != nil {
				return nil, fmt.Errorf("RRULE: %w", err)
			}
			if opt.Freq != rrule.YEARLY {
				return nil, errors.New("RRULE: an observance recurs yearly")
			}
			if !opt.Until.IsZero() && strings.HasSuffix(strings.ToUpper(rp.Value), "Z") {
				opt.Until = opt.Until.Add(time.Duration(from) * time.Second)
			}
			opt.Dtstart = start
			if opt.Until.IsZero() && opt.Count == 0 {
				// rrule-go ends an unbounded rule 292 years after its
				// start; Outlook starts its rules in 1601.
				opt.Until = last
			}
			r, err := rrule.NewRRule(*opt)
			if err != nil {
				return nil, fmt.Errorf("RRULE: %w", err)
			}
			onsets = append(onsets, r.Between(start, last, true)...)
		}
		for _, rp := range c.Props.Values(ical.PropRecurrenceDates) {
			for _, v := range strings.Split(rp.Value, ",") {
				if t, _, err := parseTime(strings.TrimSuffix(strings.TrimSpace(v), "Z"), time.UTC, false); err == nil {
					onsets = append(onsets, t)
				}
			}
		}
		for _, o := range onsets {
			tr := transition{at: o.Unix() - int64(from), obs: obs}
			trans = append(trans, tr)
			if !found || tr.at < firstAt {
				firstAt, found = tr.at, true
				// Before a DAYLIGHT onset standard time held, and the
				// other way round.
				before = observance{offset: from, dst: !obs.dst && from != to}
			}
		}
	}
	if !found {
		return nil, errors.New("VTIMEZONE has no STANDARD or DAYLIGHT observance")
	}
	slices.SortFunc(trans, func(a, b transition) int { return cmpInt64(a.at, b.at) })
	trans = slices.CompactFunc(trans, func(a, b transition) bool { return a.at == b.at })
	return time.LoadLocationFromTZData(tzid, tzif(before, trans))
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// utcOffset reads a UTC-OFFSET value: +HHMM or +HHMMSS.
func utcOffset(p *ical.Prop) (int, error) {
	if p == nil {
		return 0, errors.New("missing")
	}
	v := strings.TrimSpace(p.Value)
	if len(v) != 5 && len(v) != 7 || (v[0] != '+' && v[0] != '-') {
		return 0, errors.New("not a UTC offset")
	}
	n := 0
	for i, unit := range []int{3600, 60, 1} {
		if 1+2*i >= len(v) {
			break
		}
		d, err := strconv.Atoi(v[1+2*i : 3+2*i])
		if err != nil || d < 0 {
			return 0, errors.New("not a UTC offset")
		}
		n += d * unit
	}
	if v[0] == '-' {
		n = -n
	}
	return n, nil
}

// tzif encodes a zone as TZif version 2 data (RFC 8536), which
// time.LoadLocationFromTZData reads: initial holds before the first
// transition.
func tzif(initial observance, trans []transition) []byte {
	types := []observance{initial}
	index := func(o observance) byte {
		for i, t := range types {
			if t == o {
				return byte(i)
			}
		}
		types = append(types, o)
		return byte(len(types) - 1)
	}
	idx := make([]byte, len(trans))
	for i, t := range trans {
		idx[i] = index(t.obs)
	}
	var chars []byte
	desig := make([]byte, len(types))
	for i, t := range types {
		name := t.name
		if name == "" {
			name = "LMT"
		}
		desig[i] = byte(len(chars))
		chars = append(chars, name...)
		chars = append(chars, 0)
	}
	block := func(wide bool) []byte {
		var ts []transition
		var ix []byte
		for i, t := range trans {
			if wide || (t.at >= math.MinInt32 && t.at <= math.MaxInt32) {
				ts = append(ts, t)
				ix = append(ix, idx[i])
			}
		}
		version := byte('2')
		var b []byte
		b = append(b, "TZif"...)
		b = append(b, version)
		b = append(b, make([]byte, 15)...)
		for _, n := range []int{0, 0, 0, len(ts), len(types), len(chars)} {
			b = binary.BigEndian.AppendUint32(b, uint32(n))
		}
		for _, t := range ts {
			if wide {
				b = binary.BigEndian.AppendUint64(b, uint64(t.at))
			} else {
				b = binary.BigEndian.AppendUint32(b, uint32(int32(t.at)))
			}
		}
		b = append(b, ix...)
		for i, t := range types {
			b = binary.BigEndian.AppendUint32(b, uint32(int32(t.offset)))
			dst := byte(0)
			if t.dst {
				dst = 1
			}
			b = append(b, dst, desig[i])
		}
		return append(b, chars...)
	}
	out := block(false)
	out = append(out, block(true)...)
	return append(out, '\n', '\n')
}
