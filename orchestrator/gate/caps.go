package gate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/internal/jsretry"
	"github.com/sluicehq/sluice/schemas"
)

// CapsBucket is the JetStream key-value bucket that keeps the per-day
// budgets of caps, so that they hold across runs and across restarts of
// the orchestrator on one state directory, as the default deployment names
// it; another's is schemas.StoreName(deployment, "CAPS"). Per-run budgets
// live in memory, with their run.
const CapsBucket = "SLUICE_CAPS"

// capsTTL is how long a per-day budget is kept after its last change:
// longer than a day, so a day's budget is never dropped while the day
// lasts.
const capsTTL = 49 * time.Hour

// maxCASTries bounds the compare-and-swap retries of one budget change
// under contention.
const maxCASTries = 64

// usage is what a budget has used, or a change of it.
type usage struct {
	Count int64   `json:"count"`
	Total float64 `json:"total"`
	// Tokens spent at a model API, for a token budget.
	Tokens int64 `json:"tokens,omitempty"`
}

// caps keeps the budgets of caps: reserve before a call is delivered,
// release when it is known not to have happened.
//
// A token budget cannot be reserved: a call's tokens are known only once
// it is answered. A call is refused when the tokens its cap's calls have
// spent already reach the budget, and what each try spent is added when
// it comes back (spend), so the last call let through may pass the
// budget by its own tokens, and calls let through at the same time by
// theirs.
//
// A call reserves a count of one and its amount on every cap of its tool,
// for each value of the cap's per argument, all at once or not at all. A
// held call reserves nothing until it is approved. A call that the worker
// answered with an error, or that no worker received, releases its
// reservation; a call whose outcome is unknown (it timed out) keeps it,
// so a cap may be under-spent, never over-spent.
type caps struct {
	g   *Gate
	now func() time.Time

	mu sync.Mutex
	kv jetstream.KeyValue
}

// reservation is what one call holds.
type reservation struct {
	items []reserved
}

type reserved struct {
	day    bool
	key    string // the KV key (day) or the run's map key (run)
	amount float64
}

// errOverCap carries the cap a call would exceed.
type errOverCap struct {
	cap    policy.Cap
	reason string
}

func (e *errOverCap) Error() string { return e.reason }

// reserve takes the call's share of every cap on its tool. It returns an
// *errOverCap when a cap would be exceeded, and another error when the
// budgets cannot be read or written: either way nothing stays reserved.
func (c *caps) reserve(ctx context.Context, r Run, tool string, args map[string]any) (*reservation, error) {
	res := &reservation{}
	for _, cp := range r.Policy().Caps(tool) {
		if cp.MaxTokens > 0 {
			if err := c.underTokens(ctx, r, cp); err != nil {
				c.release(context.WithoutCancel(ctx), r, res)
				return nil, err
			}
			continue
		}
		amount := 0.0
		if cp.Sum != "" {
			v, ok := number(args[cp.Sum])
			if !ok || v < 0 {
				c.release(context.WithoutCancel(ctx), r, res)
				return nil, &errOverCap{cap: cp, reason: fmt.Sprintf("cap %s: argument %s is not a number it can add up", cp.Ref, cp.Sum)}
			}
			amount = v
		}
		for _, k := range perKeys(cp, args) {
			it := reserved{day: cp.Window == policy.PerDay, amount: amount}
			var ok bool
			var err error
			if it.day {
				it.key = dayKey(cp, c.now().UTC(), k)
				ok, err = c.changeDay(ctx, cp, it.key, usage{Count: 1, Total: amount})
			} else {
				it.key = cp.Ref.Name + "\x00" + k
				ok = r.Usage().change(cp, it.key, usage{Count: 1, Total: amount})
			}
			if err != nil {
				c.release(context.WithoutCancel(ctx), r, res)
				return nil, fmt.Errorf("cap %s: %w", cp.Ref.Name, err)
			}
			if !ok {
				c.release(context.WithoutCancel(ctx), r, res)
				return nil, &errOverCap{cap: cp, reason: overReason(cp)}
			}
			res.items = append(res.items, it)
		}
	}
	return res, nil
}

// release gives back what a reservation holds.
func (c *caps) release(ctx context.Context, r Run, res *reservation) {
	if res == nil {
		return
	}
	for _, it := range res.items {
		if it.day {
			if _, err := c.changeDay(ctx, policy.Cap{}, it.key, usage{Count: -1, Total: -it.amount}); err != nil {
				c.g.log.Warn("cap budget not released", "key", it.key, "err", err)
			}
			continue
		}
		r.Usage().change(policy.Cap{}, it.key, usage{Count: -1, Total: -it.amount})
	}
	res.items = nil
}

// overReason says which bound of a cap a call would pass, without data.
func overReason(cp policy.Cap) string {
	var bounds []string
	if cp.Sum != "" {
		bounds = append(bounds, fmt.Sprintf("a total %s of %s", cp.Sum, strconv.FormatFloat(cp.MaxTotal, 'f', -1, 64)))
	}
	if cp.MaxCount > 0 {
		bounds = append(bounds, fmt.Sprintf("%d calls", cp.MaxCount))
	}
	per := ""
	if cp.Per != "" {
		per = " per " + cp.Per
	}
	b := bounds[0]
	if len(bounds) == 2 {
		b += " or " + bounds[1]
	}
	return fmt.Sprintf("cap %s: this call would pass %s%s per %s", cp.Ref, b, per, cp.Window)
}

// within reports whether u plus one more call of amount stays within cp.
// A change with no cap (a release) always fits.
func within(cp policy.Cap, u usage) bool {
	if cp.Ref.Name == "" {
		return true
	}
	if cp.MaxCount > 0 && u.Count > cp.MaxCount {
		return false
	}
	// Sums of decimal amounts carry rounding errors: 0.1 + 0.2 must fit
	// under 0.3.
	return cp.Sum == "" || u.Total <= cp.MaxTotal+1e-9*math.Max(1, math.Abs(cp.MaxTotal))
}

func (u usage) add(d usage) usage {
	u.Count = max(u.Count+d.Count, 0)
	u.Total = math.Max(u.Total+d.Total, 0)
	u.Tokens = max(u.Tokens+d.Tokens, 0)
	return u
}

// Usage is what one run has used of its per-run caps; the zero value is
// ready to use. Per-day budgets are kept in the caps bucket instead.
type Usage struct {
	mu  sync.Mutex
	use map[string]usage
}

// change changes a per-run budget by d; it returns false, changing
// nothing, when a call it counts would pass the cap.
func (u *Usage) change(cp policy.Cap, key string, d usage) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.use == nil {
		u.use = map[string]usage{}
	}
	next := u.use[key].add(d)
	if d.Count > 0 && !within(cp, next) {
		return false
	}
	u.use[key] = next
	return true
}

// used returns what a per-run budget has used.
func (u *Usage) used(key string) usage {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.use[key]
}

// changeDay changes a per-day budget by d with compare-and-swap, so that
// calls at the same time, in one process or in two, cannot together pass
// the cap. It returns false, changing nothing, when a call it counts would
// pass it.
func (c *caps) changeDay(ctx context.Context, cp policy.Cap, key string, d usage) (bool, error) {
	f := c.g.cfg.Fault
	ctx, stop := f.Bind(ctx)
	defer stop()
	kv, err := c.bucket(ctx)
	if err != nil {
		return false, err
	}
	for range maxCASTries {
		var u usage
		var rev uint64
		entry, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return false, fmt.Errorf("read budget: %w", err)
		default:
			if err := json.Unmarshal(entry.Value(), &u); err != nil {
				return false, fmt.Errorf("read budget: %w", err)
			}
			rev = entry.Revision()
		}
		next := u.add(d)
		if d.Count > 0 && !within(cp, next) {
			return false, nil
		}
		b, _ := json.Marshal(next)
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // another call changed it first: read it again
		default:
			if ferr := f.Err(); ferr != nil {
				err = ferr
			}
			return false, fmt.Errorf("write budget: %w", f.Refused("run state", err))
		}
	}
	return false, errors.New("write budget: too many concurrent changes")
}

// bucket opens (creating it the first time) the bucket of per-day budgets.
func (c *caps) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv != nil {
		return c.kv, nil
	}
	js, err := jetstream.New(c.g.cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("open budgets: %w", err)
	}
	var kv jetstream.KeyValue
	err = jsretry.Do(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      schemas.StoreName(c.g.cfg.Deployment, "CAPS"),
			Description: "per-day budgets of policy caps",
			History:     1,
			TTL:         capsTTL,
			Storage:     jetstream.FileStorage,
			Replicas:    max(c.g.cfg.Replicas, 1),
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open budgets: %w", err)
	}
	c.kv = kv
	return kv, nil
}

// dayKey is the KV key of one cap's budget for one day and one value of
// its per argument. The value is hashed: keys hold names, never data.
func dayKey(cp policy.Cap, day time.Time, per string) string {
	h := sha256.Sum256([]byte(per))
	return cp.Ref.Name + "." + day.Format("20060102") + "." + hex.EncodeToString(h[:16])
}

// perKeys returns the budgets a call counts against: one for all calls
// without per; else one per value of the per argument (each element of a
// list, such as several recipients, counts on its own).
func perKeys(cp policy.Cap, args map[string]any) []string {
	if cp.Per == "" {
		return []string{""}
	}
	v, ok := args[cp.Per]
	if !ok || v == nil {
		return []string{""}
	}
	list, isList := v.([]any)
	if !isList {
		list = []any{v}
	}
	var out []string
	seen := map[string]bool{}
	for _, x := range list {
		k, ok := x.(string)
		if !ok {
			b, _ := json.Marshal(x)
			k = string(b)
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return []string{""}
	}
	return out
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	case int:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case nil:
		return 0, true
	}
	return 0, false
}

// Restore counts a call that completed in an earlier pass of its run
// against the run's per-run caps of p, as the gate did when it was made.
func (u *Usage) Restore(p *policy.Set, tool string, args map[string]any) {
	for _, cp := range p.Caps(tool) {
		if cp.Window == policy.PerDay {
			continue // kept in the bucket
		}
		amount := 0.0
		if cp.Sum != "" {
			amount, _ = number(args[cp.Sum])
		}
		for _, k := range perKeys(cp, args) {
			u.change(policy.Cap{}, cp.Ref.Name+"\x00"+k, usage{Count: 1, Total: amount})
		}
	}
}

// Spent counts the tokens a call spent at a model API against the run's
// per-run token budgets of p on tool: as the gate does when the call
// answers, and when a call recorded in an earlier pass of the run is
// read again, so that a resumed run does not get a fresh budget.
func (u *Usage) Spent(p *policy.Set, tool string, used *schemas.Usage) {
	n := tokens(used)
	if n == 0 {
		return
	}
	for _, cp := range p.Caps(tool) {
		if cp.MaxTokens > 0 && cp.Window == policy.PerRun {
			u.change(cp, tokenKey(cp), usage{Tokens: n})
		}
	}
}

// spend counts the tokens one try of a call spent at a model API against
// the token budgets of the caps on tool, per run and per day. The try was
// made: a budget that cannot be written is logged, and the call goes on.
func (c *caps) spend(ctx context.Context, r Run, tool string, used *schemas.Usage) {
	n := tokens(used)
	if n == 0 {
		return
	}
	r.Usage().Spent(r.Policy(), tool, used)
	for _, cp := range r.Policy().Caps(tool) {
		if cp.MaxTokens == 0 || cp.Window != policy.PerDay {
			continue
		}
		if _, err := c.changeDay(ctx, cp, dayKey(cp, c.now().UTC(), ""), usage{Tokens: n}); err != nil {
			c.g.log.Error("tokens not counted against a per-day cap", "cap", cp.Ref.Name, "tokens", n, "err", err)
		}
	}
}

// underTokens returns an *errOverCap when the calls of a token cap have
// spent its budget already, and another error when the per-day budget
// cannot be read.
func (c *caps) underTokens(ctx context.Context, r Run, cp policy.Cap) error {
	var u usage
	if cp.Window == policy.PerDay {
		var err error
		if u, err = c.day(ctx, dayKey(cp, c.now().UTC(), "")); err != nil {
			return fmt.Errorf("cap %s: %w", cp.Ref.Name, err)
		}
	} else {
		u = r.Usage().used(tokenKey(cp))
	}
	if u.Tokens < cp.MaxTokens {
		return nil
	}
	return &errOverCap{cap: cp, reason: fmt.Sprintf("cap %s: the calls of %s have spent %d tokens of the %d allowed per %s",
		cp.Ref, strings.Join(cp.Tools, ", "), u.Tokens, cp.MaxTokens, cp.Window)}
}

// day reads a per-day budget; a budget not yet written has used nothing.
func (c *caps) day(ctx context.Context, key string) (usage, error) {
	var u usage
	ctx, stop := c.g.cfg.Fault.Bind(ctx)
	defer stop()
	kv, err := c.bucket(ctx)
	if err != nil {
		return u, err
	}
	entry, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return u, nil
	case err != nil:
		return u, fmt.Errorf("read budget: %w", err)
	}
	if err := json.Unmarshal(entry.Value(), &u); err != nil {
		return u, fmt.Errorf("read budget: %w", err)
	}
	return u, nil
}

// tokenKey is the run's map key of a per-run token budget.
func tokenKey(cp policy.Cap) string { return cp.Ref.Name + "\x00" }

// tokens is what a call spent at a model API, input and output.
func tokens(u *schemas.Usage) int64 {
	if u == nil {
		return 0
	}
	return max(u.InputTokens, 0) + max(u.OutputTokens, 0)
}
