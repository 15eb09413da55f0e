// Package jsonappend appends JSON values to a buffer byte for byte as
// encoding/json writes them, without reflection, for the encoders on the
// call path: the labels every call carries.
package jsonappend

import "encoding/json"

// String appends s as a JSON string exactly as encoding/json writes it:
// printable ASCII other than the characters it escapes goes as it is;
// anything else is left to encoding/json.
func String(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Strings appends ss as a JSON array of strings; nil as [].
func Strings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = String(b, s)
	}
	return append(b, ']')
}
