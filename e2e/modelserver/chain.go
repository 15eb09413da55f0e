package modelserver

import (
	"errors"
	"fmt"
	"io"
)

// Turn is one answer the model gives: when the prompt's last token is
// Marker, the model answers Output, then ends its turn. A chat template
// decides which marker ends the prompt (see the Modelfile in the e2e test).
type Turn struct {
	Marker string
	Output string
}

// The model's size. Every attention and feed-forward weight is zero, so a
// block adds nothing to the hidden state: the state that reaches the
// output is the last token's embedding, and the logits are
// output · RMSNorm(embed(last)). The model is a table from the last token
// to the next.
const (
	Embd   = 32
	heads  = 2
	ff     = 64
	ctxLen = 8192
	// weight is each output weight that leads from a state to its next
	// token; the logit is weight·√Embd (≈ 57) against 0 for every other
	// token, so the choice does not depend on the sampler's temperature.
	weight = 10
)

// Special token ids, as a SentencePiece ("llama") vocabulary has them.
const (
	Unk = 0
	BOS = 1
	EOS = 2
	// firstByte is <0x00>; the 256 byte tokens let any text be tokenized
	// (byte fallback), since the vocabulary has no ordinary pieces.
	firstByte = 3
)

// SentencePiece token types (llama.cpp's llama_token_type).
const (
	tokUnknown     = 2
	tokControl     = 3
	tokUserDefined = 4
	tokByte        = 6
)

// Vocab is the vocabulary of a chain model: the special tokens, the 256
// byte tokens, then each turn's marker and output as one token each.
func Vocab(turns []Turn) []string {
	v := []string{"<unk>", "<s>", "</s>"}
	for b := range 256 {
		v = append(v, fmt.Sprintf("<0x%02X>", b))
	}
	for _, t := range turns {
		v = append(v, t.Marker)
	}
	for _, t := range turns {
		v = append(v, t.Output)
	}
	return v
}

// Chain returns the metadata and tensors of a llama-architecture model
// that answers each turn's Output to a prompt ending in its Marker, and
// then ends its turn (EOS). Markers and outputs are user-defined tokens:
// a tokenizer matches them whole in the prompt's text, and they are
// written out verbatim.
func Chain(name string, turns []Turn) ([]KV, []Tensor, error) {
	if len(turns) == 0 || len(turns) >= Embd {
		return nil, nil, fmt.Errorf("a chain model has from 1 to %d turns, not %d", Embd-1, len(turns))
	}
	vocab := Vocab(turns)
	seen := map[string]bool{}
	for _, s := range vocab[firstByte+256:] {
		if s == "" || seen[s] {
			return nil, nil, errors.New("each marker and output must be non-empty and differ from the others")
		}
		seen[s] = true
	}
	n := len(vocab)
	types := make([]int32, n)
	scores := make([]float32, n)
	types[Unk], types[BOS], types[EOS] = tokUnknown, tokControl, tokControl
	for i := firstByte; i < firstByte+256; i++ {
		types[i] = tokByte
	}
	for i := firstByte + 256; i < n; i++ {
		types[i] = tokUserDefined
	}
	marker := func(i int) int { return firstByte + 256 + i }
	output := func(i int) int { return firstByte + 256 + len(turns) + i }

	// State i (0 ≤ i < len(turns)) is "the prompt ended with turn i's
	// marker"; state end is "an answer was written".
	end := len(turns)
	embd := make([]float32, n*Embd)
	out := make([]float32, n*Embd)
	for i := range turns {
		embd[marker(i)*Embd+i] = 1
		embd[output(i)*Embd+end] = 1
		out[output(i)*Embd+i] = weight
	}
	out[EOS*Embd+end] = weight

	ones := func() []float32 {
		v := make([]float32, Embd)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	zeros := func(d ...uint64) Tensor {
		n := uint64(1)
		for _, x := range d {
			n *= x
		}
		return Tensor{Dims: d, Data: make([]float32, n)}
	}
	named := func(name string, t Tensor) Tensor { t.Name = name; return t }
	tensors := []Tensor{
		{Name: "token_embd.weight", Dims: []uint64{Embd, uint64(n)}, Data: embd},
		{Name: "output_norm.weight", Dims: []uint64{Embd}, Data: ones()},
		{Name: "output.weight", Dims: []uint64{Embd, uint64(n)}, Data: out},
		{Name: "blk.0.attn_norm.weight", Dims: []uint64{Embd}, Data: ones()},
		named("blk.0.attn_q.weight", zeros(Embd, Embd)),
		named("blk.0.attn_k.weight", zeros(Embd, Embd)),
		named("blk.0.attn_v.weight", zeros(Embd, Embd)),
		named("blk.0.attn_output.weight", zeros(Embd, Embd)),
		{Name: "blk.0.ffn_norm.weight", Dims: []uint64{Embd}, Data: ones()},
		named("blk.0.ffn_gate.weight", zeros(Embd, ff)),
		named("blk.0.ffn_up.weight", zeros(Embd, ff)),
		named("blk.0.ffn_down.weight", zeros(ff, Embd)),
	}
	kvs := []KV{
		{"general.architecture", "llama"},
		{"general.name", name},
		{"general.file_type", uint32(0)}, // all f32
		{"llama.vocab_size", uint32(n)},
		{"llama.context_length", uint32(ctxLen)},
		{"llama.embedding_length", uint32(Embd)},
		{"llama.block_count", uint32(1)},
		{"llama.feed_forward_length", uint32(ff)},
		{"llama.attention.head_count", uint32(heads)},
		{"llama.attention.head_count_kv", uint32(heads)},
		{"llama.attention.layer_norm_rms_epsilon", float32(1e-5)},
		{"llama.rope.dimension_count", uint32(Embd / heads)},
		{"llama.rope.freq_base", float32(10000)},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", vocab},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.bos_token_id", uint32(BOS)},
		{"tokenizer.ggml.eos_token_id", uint32(EOS)},
		{"tokenizer.ggml.unknown_token_id", uint32(Unk)},
		{"tokenizer.ggml.add_bos_token", true},
		{"tokenizer.ggml.add_eos_token", false},
	}
	return kvs, tensors, nil
}

// WriteChain writes the GGUF file of Chain(name, turns) to w.
func WriteChain(w io.Writer, name string, turns []Turn) error {
	kvs, tensors, err := Chain(name, turns)
	if err != nil {
		return err
	}
	return Write(w, kvs, tensors)
}
