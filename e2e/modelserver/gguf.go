// Package modelserver writes the model that the opt-in end-to-end test
// against a real inference server (`make e2e-model-server`) serves: a
// GGUF file of a tiny llama-architecture model whose greedy answer to a
// prompt is fixed by its weights.
//
// gguf.go is a writer of the GGUF format (version 3) as ggml reads it, for
// f32 tensors only: a header, the metadata as typed key-value pairs, the
// tensor infos, then the tensor data, each tensor aligned. chain.go builds
// the model.
package modelserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// The GGUF value types (ggml's gguf_type).
const (
	typeUint32  = 4
	typeInt32   = 5
	typeFloat32 = 6
	typeBool    = 7
	typeString  = 8
	typeArray   = 9
)

// ggmlF32 is ggml_type GGML_TYPE_F32, the only tensor type written here.
const ggmlF32 = 0

// Alignment is the alignment of the tensor data, ggml's default (a file
// that sets no general.alignment has it).
const Alignment = 32

// KV is one metadata pair. Value is a uint32, int32, float32, bool,
// string, or a []string, []float32 or []int32 (an array of those).
type KV struct {
	Key   string
	Value any
}

// Tensor is one f32 tensor. Dims are in ggml's order, the innermost
// (a row's length) first; Data has their product of values, row after row.
type Tensor struct {
	Name string
	Dims []uint64
	Data []float32
}

// Write writes a GGUF file of the metadata and tensors to w, in the order
// given.
func Write(w io.Writer, kvs []KV, tensors []Tensor) error {
	for _, t := range tensors {
		n := uint64(1)
		for _, d := range t.Dims {
			n *= d
		}
		if len(t.Dims) == 0 || n != uint64(len(t.Data)) {
			return fmt.Errorf("gguf: tensor %s: dims %v want %d values, it has %d", t.Name, t.Dims, n, len(t.Data))
		}
	}
	e := &enc{w: bufio.NewWriter(w)}
	e.raw([]byte("GGUF"))
	e.u32(3)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		if err := e.value(kv.Value); err != nil {
			return fmt.Errorf("gguf: %s: %w", kv.Key, err)
		}
	}
	var off uint64
	for _, t := range tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(ggmlF32)
		e.u64(off)
		off = align(off + 4*uint64(len(t.Data)))
	}
	e.pad()
	for _, t := range tensors {
		for _, f := range t.Data {
			e.u32(math.Float32bits(f))
		}
		e.pad()
	}
	if e.err != nil {
		return e.err
	}
	return e.w.Flush()
}

func align(n uint64) uint64 { return (n + Alignment - 1) / Alignment * Alignment }

// enc writes little-endian values and remembers the first error and the
// offset.
type enc struct {
	w   *bufio.Writer
	n   uint64
	err error
}

func (e *enc) raw(b []byte) {
	if e.err != nil {
		return
	}
	_, e.err = e.w.Write(b)
	e.n += uint64(len(b))
}

func (e *enc) u32(v uint32) { e.raw(binary.LittleEndian.AppendUint32(nil, v)) }
func (e *enc) u64(v uint64) { e.raw(binary.LittleEndian.AppendUint64(nil, v)) }

func (e *enc) str(s string) {
	e.u64(uint64(len(s)))
	e.raw([]byte(s))
}

func (e *enc) pad() { e.raw(make([]byte, align(e.n)-e.n)) }

func (e *enc) value(v any) error {
	switch v := v.(type) {
	case uint32:
		e.u32(typeUint32)
		e.u32(v)
	case int32:
		e.u32(typeInt32)
		e.u32(uint32(v))
	case float32:
		e.u32(typeFloat32)
		e.u32(math.Float32bits(v))
	case bool:
		e.u32(typeBool)
		if v {
			e.raw([]byte{1})
		} else {
			e.raw([]byte{0})
		}
	case string:
		e.u32(typeString)
		e.str(v)
	case []string:
		e.u32(typeArray)
		e.u32(typeString)
		e.u64(uint64(len(v)))
		for _, s := range v {
			e.str(s)
		}
	case []float32:
		e.u32(typeArray)
		e.u32(typeFloat32)
		e.u64(uint64(len(v)))
		for _, f := range v {
			e.u32(math.Float32bits(f))
		}
	case []int32:
		e.u32(typeArray)
		e.u32(typeInt32)
		e.u64(uint64(len(v)))
		for _, i := range v {
			e.u32(uint32(i))
		}
	default:
		return errors.New("a value of an unsupported type")
	}
	return nil
}
