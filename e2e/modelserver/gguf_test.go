package modelserver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

// file is a GGUF file as read back by readGGUF.
type file struct {
	version uint32
	kv      map[string]any
	keys    []string
	tensors map[string]Tensor
	order   []string
}

// readGGUF reads a GGUF file as ggml does (gguf.cpp): header, metadata,
// tensor infos, then data at each info's offset from the aligned start of
// the data section. It is written from the format's description, apart
// from the writer, so that the two check each other.
func readGGUF(b []byte) (*file, error) {
	r := bytes.NewReader(b)
	rd := func(v any) error { return binary.Read(r, binary.LittleEndian, v) }
	str := func() (string, error) {
		var n uint64
		if err := rd(&n); err != nil {
			return "", err
		}
		if n > uint64(r.Len()) {
			return "", fmt.Errorf("string of %d bytes past the end", n)
		}
		s := make([]byte, n)
		_, err := io.ReadFull(r, s)
		return string(s), err
	}
	var scalar func(typ uint32) (any, error)
	scalar = func(typ uint32) (any, error) {
		switch typ {
		case typeUint32:
			var v uint32
			return v, rd(&v)
		case typeInt32:
			var v int32
			return v, rd(&v)
		case typeFloat32:
			var v float32
			return v, rd(&v)
		case typeBool:
			var v uint8
			err := rd(&v)
			if v > 1 {
				return nil, fmt.Errorf("bool %d", v)
			}
			return v == 1, err
		case typeString:
			return str()
		case typeArray:
			var et uint32
			var n uint64
			if err := rd(&et); err != nil {
				return nil, err
			}
			if err := rd(&n); err != nil {
				return nil, err
			}
			var a []any
			for range n {
				v, err := scalar(et)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			return a, nil
		}
		return nil, fmt.Errorf("value type %d", typ)
	}
	magic := make([]byte, 4)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "GGUF" {
		return nil, fmt.Errorf("magic %q", magic)
	}
	f := &file{kv: map[string]any{}, tensors: map[string]Tensor{}}
	var nt, nkv uint64
	for _, v := range []any{&f.version, &nt, &nkv} {
		if err := rd(v); err != nil {
			return nil, err
		}
	}
	for range nkv {
		k, err := str()
		if err != nil {
			return nil, err
		}
		var typ uint32
		if err := rd(&typ); err != nil {
			return nil, err
		}
		v, err := scalar(typ)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		f.kv[k] = v
		f.keys = append(f.keys, k)
	}
	type info struct {
		dims []uint64
		off  uint64
	}
	infos := map[string]info{}
	for range nt {
		name, err := str()
		if err != nil {
			return nil, err
		}
		var nd, typ uint32
		if err := rd(&nd); err != nil {
			return nil, err
		}
		dims := make([]uint64, nd)
		if err := rd(dims); err != nil {
			return nil, err
		}
		var off uint64
		if err := rd(&typ); err != nil {
			return nil, err
		}
		if err := rd(&off); err != nil {
			return nil, err
		}
		if typ != ggmlF32 || off%Alignment != 0 {
			return nil, fmt.Errorf("tensor %s: type %d at offset %d", name, typ, off)
		}
		infos[name] = info{dims, off}
		f.order = append(f.order, name)
	}
	pos := uint64(len(b) - r.Len())
	data := (pos + Alignment - 1) / Alignment * Alignment
	for _, name := range f.order {
		in := infos[name]
		n := uint64(1)
		for _, d := range in.dims {
			n *= d
		}
		start := data + in.off
		if start+4*n > uint64(len(b)) {
			return nil, fmt.Errorf("tensor %s past the end of the file", name)
		}
		vals := make([]float32, n)
		for i := range vals {
			vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[start+4*uint64(i):]))
		}
		f.tensors[name] = Tensor{Name: name, Dims: in.dims, Data: vals}
	}
	return f, nil
}

func TestWriteReadsBack(t *testing.T) {
	kvs := []KV{
		{"a.u32", uint32(7)}, {"a.i32", int32(-3)}, {"a.f32", float32(0.5)}, {"a.true", true}, {"a.false", false},
		{"a.str", "héllo"}, {"a.strs", []string{"x", "", "yz"}}, {"a.f32s", []float32{1, -2}}, {"a.i32s", []int32{4, -5, 6}},
	}
	tensors := []Tensor{
		{Name: "odd", Dims: []uint64{3}, Data: []float32{1, 2, 3}},
		{Name: "m", Dims: []uint64{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
	}
	var buf bytes.Buffer
	if err := Write(&buf, kvs, tensors); err != nil {
		t.Fatal(err)
	}
	f, err := readGGUF(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a.u32": uint32(7), "a.i32": int32(-3), "a.f32": float32(0.5), "a.true": true, "a.false": false,
		"a.str": "héllo", "a.strs": []any{"x", "", "yz"}, "a.f32s": []any{float32(1), float32(-2)},
		"a.i32s": []any{int32(4), int32(-5), int32(6)}}
	if f.version != 3 || len(f.kv) != len(want) {
		t.Fatalf("version %d, %d keys", f.version, len(f.kv))
	}
	for k, v := range want {
		if fmt.Sprintf("%#v", f.kv[k]) != fmt.Sprintf("%#v", v) {
			t.Errorf("%s = %#v, want %#v", k, f.kv[k], v)
		}
	}
	if !slices.Equal(f.order, []string{"odd", "m"}) {
		t.Fatalf("tensors %v", f.order)
	}
	for _, w := range tensors {
		g := f.tensors[w.Name]
		if !slices.Equal(g.Dims, w.Dims) || !slices.Equal(g.Data, w.Data) {
			t.Errorf("tensor %s read back as %v %v", w.Name, g.Dims, g.Data)
		}
	}
	if buf.Len()%Alignment != 0 {
		t.Errorf("file of %d bytes: the last tensor is not padded to %d", buf.Len(), Alignment)
	}
}

func TestWriteRefuses(t *testing.T) {
	if err := Write(io.Discard, nil, []Tensor{{Name: "t", Dims: []uint64{2, 2}, Data: make([]float32, 3)}}); err == nil ||
		!strings.Contains(err.Error(), "tensor t: dims [2 2] want 4 values, it has 3") {
		t.Errorf("a tensor of the wrong size: %v", err)
	}
	if err := Write(io.Discard, []KV{{"k", 1.5}}, nil); err == nil || !strings.Contains(err.Error(), "k: a value of an unsupported type") {
		t.Errorf("a float64 value: %v", err)
	}
	if _, _, err := Chain("m", []Turn{{"<a>", "x"}, {"<b>", "x"}}); err == nil {
		t.Error("two turns with one output were taken")
	}
}

// rmsNorm is llama's RMSNorm without its weight: x / √(mean(x²) + ε).
func rmsNorm(x []float32, eps float64) []float32 {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	s := 1 / math.Sqrt(ss/float64(len(x))+eps)
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(float64(v) * s)
	}
	return y
}

// next is the model's greedy next token after a prompt ending in last,
// computed from the file read back: it checks that every attention and
// feed-forward weight is zero (so each block adds nothing to the hidden
// state), then takes argmax of output · (RMSNorm(embed(last)) ⊙ norm).
func next(t *testing.T, f *file, last int) (tok int, margin float32) {
	t.Helper()
	for _, name := range f.order {
		if strings.HasPrefix(name, "blk.") && !strings.HasSuffix(name, "_norm.weight") {
			for _, v := range f.tensors[name].Data {
				if v != 0 {
					t.Fatalf("%s has a weight that is not zero", name)
				}
			}
		}
	}
	embd, out, norm := f.tensors["token_embd.weight"], f.tensors["output.weight"], f.tensors["output_norm.weight"]
	d := int(embd.Dims[0])
	h := rmsNorm(embd.Data[last*d:(last+1)*d], float64(f.kv["llama.attention.layer_norm_rms_epsilon"].(float32)))
	for i := range h {
		h[i] *= norm.Data[i]
	}
	best, second := float32(math.Inf(-1)), float32(math.Inf(-1))
	for u := range int(out.Dims[1]) {
		var l float32
		for i := range d {
			l += out.Data[u*d+i] * h[i]
		}
		switch {
		case l > best:
			best, second, tok = l, best, u
		case l > second:
			second = l
		}
	}
	return tok, best - second
}

// The chain model answers each turn's output to a prompt that ends in its
// marker, then ends its turn, by a wide margin over every other token.
func TestChainAnswersByItsMarkers(t *testing.T) {
	turns := []Turn{
		{Marker: "<|ask|>", Output: `<tool_call>{"name":"web__fetch","arguments":{"url":"http://127.0.0.1:1/hotel"}}</tool_call>`},
		{Marker: "<|answer|>", Output: "A double room costs 120 EUR per night."},
	}
	var buf bytes.Buffer
	if err := WriteChain(&buf, "chain", turns); err != nil {
		t.Fatal(err)
	}
	f, err := readGGUF(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	vocab := Vocab(turns)
	got := f.kv["tokenizer.ggml.tokens"].([]any)
	if len(got) != len(vocab) || f.tensors["token_embd.weight"].Dims[1] != uint64(len(vocab)) ||
		f.tensors["output.weight"].Dims[1] != uint64(len(vocab)) {
		t.Fatalf("%d tokens in the vocabulary, tensors %v and %v", len(got), f.tensors["token_embd.weight"].Dims, f.tensors["output.weight"].Dims)
	}
	id := map[string]int{}
	for i, s := range got {
		id[s.(string)] = i
	}
	if id["<0x0A>"] != firstByte+10 || id["</s>"] != EOS || f.kv["tokenizer.ggml.eos_token_id"] != uint32(EOS) {
		t.Fatalf("byte or special tokens misplaced: %v", id)
	}
	for _, tr := range turns {
		tok, margin := next(t, f, id[tr.Marker])
		if tok != id[tr.Output] || margin < 50 {
			t.Errorf("after %s: token %d (%q) by %.1f, want %q by at least 50", tr.Marker, tok, vocab[tok], margin, tr.Output)
		}
		if tok, margin := next(t, f, id[tr.Output]); tok != EOS || margin < 50 {
			t.Errorf("after %q: token %d by %.1f, want </s>", tr.Output, tok, margin)
		}
	}
	if tt := f.kv["tokenizer.ggml.token_type"].([]any); tt[id["<|ask|>"]] != int32(tokUserDefined) || tt[id["<0x41>"]] != int32(tokByte) {
		t.Errorf("token types %v", tt[:4])
	}
}
