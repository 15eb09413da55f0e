// Package jsonvalue decodes JSON into the values Sluice's expressions and
// schemas work with: maps, lists, strings, booleans, nil, integers as
// int64 and other numbers as float64.
package jsonvalue

import (
	"bytes"
	"encoding/json"
)

// Decode decodes b; empty input is nil.
func Decode(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}
