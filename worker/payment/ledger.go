package payment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// record is one line of the ledger, with exactly these fields.
type record struct {
	ChargeID       string  `json:"charge_id"`
	Amount         float64 `json:"amount"`
	Currency       string  `json:"currency"`
	Payee          string  `json:"payee"`
	Memo           string  `json:"memo"`
	IdempotencyKey string  `json:"idempotency_key"`
	RunID          string  `json:"run_id"`
	Step           string  `json:"step"`
	At             string  `json:"at"`
}

// ledger is the in-memory view of the ledger file: every idempotency key
// seen and the sum of the charges in the account's currency, as of the
// first off bytes of the file.
//
// Lock order: mu, then the file lock.
type ledger struct {
	path     string
	currency string

	mu    sync.Mutex
	f     *os.File
	off   int64             // bytes of the file read so far
	lines int               // lines read so far
	byKey map[string]record // the first charge of each idempotency key
	sum   decimalValue      // charges in currency
	stale bool              // the view must be rebuilt from the start
}

// openLedger opens path for reading and appending, creating it (0600, in a
// directory created 0700) when it does not exist.
func openLedger(path, currency string) (*ledger, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create ledger directory: %w", err)
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// Make the new directory entry durable, so that a synced charge
		// cannot vanish with it.
		if d, err := os.Open(dir); err == nil {
			_ = d.Sync()
			_ = d.Close()
		}
	}
	if err := checkLockable(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return &ledger{path: path, currency: currency, f: f, byKey: map[string]record{}, stale: true}, nil
}

// read brings the view up to date with the file.
func (l *ledger) read() error {
	return l.locked(lockShared, l.catchUp)
}

// spent returns the sum of the charges in the account's currency.
func (l *ledger) spent() (decimalValue, error) {
	var sum decimalValue
	err := l.locked(lockShared, func() error {
		if err := l.catchUp(); err != nil {
			return err
		}
		sum = l.sum
		return nil
	})
	return sum, err
}

// charge appends rec unless its idempotency key is in the ledger already,
// and returns the charge the key stands for: rec with the id and time that
// newID made for it, or the earlier charge.
func (l *ledger) charge(rec record, newID func() (id, at string)) (record, error) {
	var out record
	err := l.locked(lockExclusive, func() error {
		if err := l.catchUp(); err != nil {
			return err
		}
		if prev, ok := l.byKey[rec.IdempotencyKey]; ok {
			out = prev
			return nil
		}
		rec.ChargeID, rec.At = newID()
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode charge: %w", err)
		}
		b = append(b, '\n')
		// One write of the whole line; O_APPEND puts it at the end.
		n, err := l.f.Write(b)
		if err != nil {
			l.stale = true
			return fmt.Errorf("append to ledger %s: %w", l.path, err)
		}
		if err := l.f.Sync(); err != nil {
			l.stale = true
			return fmt.Errorf("sync ledger %s: %w", l.path, err)
		}
		// Every writer holds the exclusive lock, and catchUp read the
		// file to its end under it, so the line sits at l.off.
		l.off += int64(n)
		l.lines++
		l.add(rec)
		out = rec
		return nil
	})
	return out, err
}

func (l *ledger) locked(how int, fn func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := flockFile(l.f, how); err != nil {
		return fmt.Errorf("lock ledger %s: %w", l.path, err)
	}
	defer func() { _ = flockFile(l.f, lockUnlock) }()
	return fn()
}

func (l *ledger) add(rec record) {
	if _, ok := l.byKey[rec.IdempotencyKey]; !ok {
		l.byKey[rec.IdempotencyKey] = rec
	}
	if rec.Currency == l.currency {
		l.sum = l.sum.add(decimal(rec.Amount))
	}
}

// catchUp reads the lines appended since the last read. It commits nothing
// unless every new line is a valid record; after a failure the next call
// starts over from the beginning of the file, so that a repaired ledger is
// picked up without a restart. The caller holds the locks.
func (l *ledger) catchUp() error {
	if l.stale {
		l.off, l.lines, l.byKey, l.sum, l.stale = 0, 0, map[string]record{}, decimalValue{}, false
	}
	st, err := l.f.Stat()
	if err != nil {
		l.stale = true
		return fmt.Errorf("read ledger %s: %w", l.path, err)
	}
	size := st.Size()
	if size < l.off {
		l.stale = true
		return fmt.Errorf("ledger %s: the file shrank from %d to %d bytes; a ledger is append-only", l.path, l.off, size)
	}
	if size == l.off {
		return nil
	}
	buf := make([]byte, size-l.off)
	if _, err := l.f.ReadAt(buf, l.off); err != nil && !errors.Is(err, io.EOF) {
		l.stale = true
		return fmt.Errorf("read ledger %s: %w", l.path, err)
	}
	var recs []record
	line := l.lines
	for len(buf) > 0 {
		line++
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			l.stale = true
			return l.corrupt(line, "the last line is not terminated (a torn write?)")
		}
		rec, err := parseRecord(buf[:i])
		if err != nil {
			l.stale = true
			return l.corrupt(line, err.Error())
		}
		recs = append(recs, rec)
		buf = buf[i+1:]
	}
	for _, rec := range recs {
		l.add(rec)
	}
	l.off, l.lines = size, line
	return nil
}

func (l *ledger) corrupt(line int, why string) error {
	return fmt.Errorf("ledger %s:%d: %s; repair or remove that line, the worker does not rewrite the ledger", l.path, line, why)
}

// parseRecord decodes one line. Its errors describe what is wrong without
// quoting the line.
func parseRecord(b []byte) (record, error) {
	var rec record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return rec, errors.New("not a JSON charge record")
	}
	if dec.More() {
		return rec, errors.New("more than one JSON value on the line")
	}
	switch {
	case rec.ChargeID == "":
		return rec, errors.New("charge_id is missing")
	case rec.IdempotencyKey == "":
		return rec, errors.New("idempotency_key is missing")
	case rec.Currency == "":
		return rec, errors.New("currency is missing")
	case rec.Payee == "":
		return rec, errors.New("payee is missing")
	case !(rec.Amount > 0) || math.IsInf(rec.Amount, 0):
		return rec, errors.New("amount is not a number greater than 0")
	}
	return rec, nil
}

// decimalValue is an exact sum of amounts, each taken as the decimal it
// was written as, so that 0.1 + 0.2 is 0.3. The zero value is 0.
type decimalValue struct{ r *big.Rat }

func decimal(f float64) decimalValue {
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	if !ok {
		r = new(big.Rat)
	}
	return decimalValue{r}
}

func (d decimalValue) rat() *big.Rat {
	if d.r == nil {
		return new(big.Rat)
	}
	return d.r
}

func (d decimalValue) add(e decimalValue) decimalValue {
	return decimalValue{new(big.Rat).Add(d.rat(), e.rat())}
}

func (d decimalValue) sub(e decimalValue) decimalValue {
	return decimalValue{new(big.Rat).Sub(d.rat(), e.rat())}
}

func (d decimalValue) float() float64 {
	f, _ := d.rat().Float64()
	return f
}
