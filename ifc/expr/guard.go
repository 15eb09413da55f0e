package expr

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// MaxValueSize bounds, in bytes, a string that replace() or join() may
// build, and the JSON form of a template's value. CEL's cost limit is
// checked after each operation; these two functions can multiply the sizes
// of their inputs in one operation, so their output is measured before it
// is built.
const MaxValueSize = 16 << 20

var errTooLarge = fmt.Errorf("result larger than %d bytes", MaxValueSize)

// guardedFunctions redefine the overloads of ext.Strings whose result can
// be the product of their inputs' sizes (replace, join with a separator),
// with the same signatures and semantics and a size check first.
func guardedFunctions() []cel.EnvOption {
	return []cel.EnvOption{
		cel.Function("replace",
			cel.MemberOverload("string_replace_string_string",
				[]*cel.Type{cel.StringType, cel.StringType, cel.StringType}, cel.StringType,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val {
					return guardedReplace(args[0], args[1], args[2], -1)
				})),
			cel.MemberOverload("string_replace_string_string_int",
				[]*cel.Type{cel.StringType, cel.StringType, cel.StringType, cel.IntType}, cel.StringType,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val {
					n, ok := args[3].(types.Int)
					if !ok {
						return types.NoSuchOverloadErr()
					}
					return guardedReplace(args[0], args[1], args[2], int64(n))
				}))),
		cel.Function("join",
			cel.MemberOverload("list_join_string",
				[]*cel.Type{cel.ListType(cel.StringType), cel.StringType}, cel.StringType,
				cel.BinaryBinding(guardedJoin))),
	}
}

func guardedReplace(str, old, repl ref.Val, n int64) ref.Val {
	s, ok1 := str.(types.String)
	o, ok2 := old.(types.String)
	r, ok3 := repl.(types.String)
	if !ok1 || !ok2 || !ok3 {
		return types.NoSuchOverloadErr()
	}
	count := int64(strings.Count(string(s), string(o)))
	if o == "" {
		count = int64(utf8.RuneCountInString(string(s))) + 1
	}
	if n >= 0 && n < count {
		count = n
	}
	if int64(len(s))+count*(int64(len(r))-int64(len(o))) > MaxValueSize {
		return types.WrapErr(errTooLarge)
	}
	return types.String(strings.Replace(string(s), string(o), string(r), int(count)))
}

func guardedJoin(list, sep ref.Val) ref.Val {
	l, ok1 := list.(traits.Lister)
	d, ok2 := sep.(types.String)
	if !ok1 || !ok2 {
		return types.NoSuchOverloadErr()
	}
	n, ok := l.Size().(types.Int)
	if !ok {
		return types.NoSuchOverloadErr()
	}
	elems := make([]string, 0, int(n))
	total := int64(0)
	for i := types.Int(0); i < n; i++ {
		e, ok := l.Get(i).(types.String)
		if !ok {
			return types.NewErr("join: list element is not a string")
		}
		elems = append(elems, string(e))
		total += int64(len(e))
		if i > 0 {
			total += int64(len(d))
		}
		if total > MaxValueSize {
			return types.WrapErr(errTooLarge)
		}
	}
	return types.String(strings.Join(elems, string(d)))
}
