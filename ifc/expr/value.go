package expr

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// maxDepth bounds the nesting of a value converted from CEL, so that a
// cyclic input fails instead of recursing forever.
const maxDepth = 1000

// toJSON converts a CEL value to a JSON-compatible Go value: map[string]any,
// []any, string, int64, float64, bool or nil. Messages name types, never
// values. A value whose JSON form would exceed MaxValueSize is an error:
// CEL shares values, so a small list can stand for a huge document.
func toJSON(v ref.Val) (any, error) {
	c := &converter{}
	return c.convert(v, 0)
}

type converter struct {
	size int64 // approximate size of the JSON form so far
}

func (c *converter) add(n int) error {
	c.size += int64(n) + 1
	if c.size > MaxValueSize {
		return errTooLarge
	}
	return nil
}

func (c *converter) convert(v ref.Val, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("value nested too deeply")
	}
	size := 8
	if s, ok := v.(types.String); ok {
		size = len(s)
	} else if b, ok := v.(types.Bytes); ok {
		size = len(b) * 4 / 3
	}
	if err := c.add(size); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(x), nil
	case types.Int:
		return int64(x), nil
	case types.Uint:
		if uint64(x) > math.MaxInt64 {
			return nil, errors.New("uint value out of the int64 range")
		}
		return int64(x), nil
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, errors.New("NaN or infinite double has no JSON form")
		}
		return f, nil
	case types.String:
		return string(x), nil
	case types.Bytes:
		return base64.StdEncoding.EncodeToString(x), nil
	case types.Timestamp:
		return x.Time.UTC().Format(time.RFC3339Nano), nil
	case types.Duration:
		return strconv.FormatFloat(x.Duration.Seconds(), 'f', -1, 64) + "s", nil
	case traits.Mapper:
		out := map[string]any{}
		it := x.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			key, err := mapKey(k)
			if err != nil {
				return nil, err
			}
			if _, dup := out[key]; dup {
				return nil, fmt.Errorf("map keys collide as JSON object keys")
			}
			if err := c.add(len(key)); err != nil {
				return nil, err
			}
			val, err := c.convert(x.Get(k), depth+1)
			if err != nil {
				return nil, err
			}
			out[key] = val
		}
		return out, nil
	case traits.Lister:
		n, ok := x.Size().(types.Int)
		if !ok {
			return nil, errors.New("list of unknown size")
		}
		out := make([]any, 0, int(n))
		it := x.Iterator()
		for it.HasNext() == types.True {
			val, err := c.convert(it.Next(), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, val)
		}
		return out, nil
	}
	return nil, fmt.Errorf("a value of type %s has no JSON form", v.Type().TypeName())
}

// mapKey renders a CEL map key as a JSON object key: strings as they are,
// integers and booleans in decimal or as true/false.
func mapKey(k ref.Val) (string, error) {
	switch x := k.(type) {
	case types.String:
		return string(x), nil
	case types.Int:
		return strconv.FormatInt(int64(x), 10), nil
	case types.Uint:
		return strconv.FormatUint(uint64(x), 10), nil
	case types.Bool:
		return strconv.FormatBool(bool(x)), nil
	}
	return "", fmt.Errorf("a map key of type %s has no JSON form", k.Type().TypeName())
}

// interpolate writes v as text: a string as it is, anything else as
// compact JSON.
func interpolate(b *strings.Builder, v any) error {
	if s, ok := v.(string); ok {
		b.WriteString(s)
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return errors.New("value cannot be written as text")
	}
	b.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	return nil
}
