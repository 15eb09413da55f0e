package approval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Remembered is an answer a person gave once and asked to be remembered,
// within a scope they picked: later calls of the same tool whose pinned
// arguments are exactly the values the person approved (this payee, this
// host), in the same flow unless they chose any flow, within a count and a
// sum per day and until a date, go ahead without asking again. Any other
// call is held as before: a scope never widens without a person, and an
// attacker who chooses arguments can only pick among what a person
// already scoped. Each use is counted before the call goes ahead.
type Remembered struct {
	ID   string `json:"id"`
	Tool string `json:"tool"`
	// Pins are the arguments a call must carry, each exactly (the same
	// JSON value: no case folding, no trimming, no lookalike).
	Pins map[string]any `json:"pins"`
	// Flow limits it to one flow; empty: any flow.
	Flow string `json:"flow,omitempty"`
	// MaxPerDay bounds the calls it lets through per day (UTC); 0: no bound.
	MaxPerDay int `json:"max_per_day,omitempty"`
	// SumArg and MaxSumPerDay bound the sum of one numeric argument
	// (amount) over the calls of a day; a call without it is not let
	// through.
	SumArg       string    `json:"sum_arg,omitempty"`
	MaxSumPerDay float64   `json:"max_sum_per_day,omitempty"`
	Until        time.Time `json:"until"`
	// Who answered, when, and the held call they answered.
	Who       string     `json:"who"`
	Created   time.Time  `json:"created"`
	Approval  string     `json:"approval"`
	Revoked   *time.Time `json:"revoked,omitempty"`
	RevokedBy string     `json:"revoked_by,omitempty"`
	// Day, Count and Sum are the uses of the day Day ("2006-01-02").
	Day   string  `json:"day,omitempty"`
	Count int     `json:"count,omitempty"`
	Sum   float64 `json:"sum,omitempty"`
}

// Scope is what a person picks when they ask for an answer to be
// remembered.
type Scope struct {
	// Pin names the arguments that must stay exactly as approved; at
	// least one.
	Pin []string `json:"pin"`
	// AnyFlow lets it apply in every flow, not just the held call's.
	AnyFlow      bool    `json:"any_flow,omitempty"`
	MaxPerDay    int     `json:"max_per_day,omitempty"`
	SumArg       string  `json:"sum_arg,omitempty"`
	MaxSumPerDay float64 `json:"max_sum_per_day,omitempty"`
	// Until, when zero, is DefaultRemember after the answer.
	Until time.Time `json:"until,omitzero"`
}

// DefaultRemember is how long a remembered answer lasts when the person
// names no date.
const DefaultRemember = 30 * 24 * time.Hour

// MaxRemember is the longest a remembered answer may last.
const MaxRemember = 366 * 24 * time.Hour

// Remember makes the remembered answer of an approved call a within scope.
func Remember(id string, a *Approval, sc Scope, who string, now time.Time) (*Remembered, error) {
	if len(sc.Pin) == 0 {
		return nil, errors.New("remember: name at least one argument to keep as approved (--remember payee)")
	}
	r := &Remembered{ID: id, Tool: a.Tool, Pins: map[string]any{}, MaxPerDay: sc.MaxPerDay,
		SumArg: sc.SumArg, MaxSumPerDay: sc.MaxSumPerDay, Until: sc.Until, Who: who, Created: now, Approval: a.ID}
	for _, p := range sc.Pin {
		v, ok := a.Args[p]
		if !ok {
			return nil, fmt.Errorf("remember: the held call has no argument %q (it has %s)", p, strings.Join(slices.Sorted(maps.Keys(a.Args)), ", "))
		}
		r.Pins[p] = v
	}
	if !sc.AnyFlow {
		r.Flow = a.Flow
	}
	switch {
	case sc.MaxPerDay < 0:
		return nil, errors.New("remember: the count per day cannot be negative")
	case (sc.SumArg == "") != (sc.MaxSumPerDay == 0):
		return nil, errors.New("remember: a sum per day names its argument and its bound (amount=500)")
	case sc.MaxSumPerDay < 0:
		return nil, errors.New("remember: the sum per day cannot be negative")
	}
	if sc.SumArg != "" {
		if _, ok := number(a.Args[sc.SumArg]); !ok {
			return nil, fmt.Errorf("remember: the held call's argument %q is not a number to sum", sc.SumArg)
		}
	}
	if r.Until.IsZero() {
		r.Until = now.Add(DefaultRemember)
	}
	if !r.Until.After(now) || r.Until.Sub(now) > MaxRemember {
		return nil, fmt.Errorf("remember: the date must be after now and within %d days", int(MaxRemember.Hours()/24))
	}
	// The call approved now is the first use of the day.
	if ok, why := r.Admit(a.Tool, a.Flow, a.Args, now); !ok {
		return nil, fmt.Errorf("remember: the call approved now is already outside that scope (%s)", why)
	}
	return r, nil
}

// Admit reports whether the remembered answer lets a call through now,
// and counts the use in r when it does. why says, when it does not, which
// part of the scope the call is outside of.
func (r *Remembered) Admit(tool, flow string, args map[string]any, now time.Time) (ok bool, why string) {
	switch {
	case r.Revoked != nil:
		return false, "revoked"
	case r.Tool != tool:
		return false, "another tool"
	case r.Flow != "" && r.Flow != flow:
		return false, "another flow"
	case !now.Before(r.Until):
		return false, "expired"
	}
	for _, p := range slices.Sorted(maps.Keys(r.Pins)) {
		if !sameValue(args[p], r.Pins[p]) {
			return false, "another " + p
		}
	}
	day := now.UTC().Format("2006-01-02")
	count, sum := r.Count, r.Sum
	if r.Day != day {
		count, sum = 0, 0
	}
	if r.MaxPerDay > 0 && count+1 > r.MaxPerDay {
		return false, fmt.Sprintf("more than %d calls today", r.MaxPerDay)
	}
	if r.SumArg != "" {
		n, ok := number(args[r.SumArg])
		if !ok || n < 0 {
			return false, "no " + r.SumArg + " to count"
		}
		if sum+n > r.MaxSumPerDay {
			return false, fmt.Sprintf("%s over %g today", r.SumArg, r.MaxSumPerDay)
		}
		sum += n
	}
	r.Day, r.Count, r.Sum = day, count+1, sum
	return true, ""
}

// Describe is the scope in words, for a person.
func (r *Remembered) Describe() string {
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(r.Pins)) {
		b, _ := json.Marshal(r.Pins[p])
		parts = append(parts, p+" "+string(b))
	}
	s := r.Tool + " with " + strings.Join(parts, " and ")
	if r.Flow != "" {
		s += " in flow " + r.Flow
	} else {
		s += " in any flow"
	}
	if r.MaxPerDay > 0 {
		s += fmt.Sprintf(", at most %d a day", r.MaxPerDay)
	}
	if r.SumArg != "" {
		s += fmt.Sprintf(", %s at most %g a day", r.SumArg, r.MaxSumPerDay)
	}
	return s + ", until " + r.Until.UTC().Format(time.RFC3339)
}

// sameValue compares two JSON values exactly.
func sameValue(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}
