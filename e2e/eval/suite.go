package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A suite is one directory of e2e/eval/suites: an environment, its
// injection vectors, the worker that serves its tools, the user's policy,
// and the user and injection tasks.
type suite struct {
	name   string
	dir    string
	worker string
	// env is environment.yaml, as a generic JSON value, with its
	// {{inject:VECTOR}} placeholders.
	env     any
	vectors map[string]string
	tasks   []*userTask
	attacks []*injectionTask
}

type userTask struct {
	ID      string          `yaml:"id"`
	Prompt  string          `yaml:"prompt"`
	Calls   []plannedCall   `yaml:"calls"`
	Answer  string          `yaml:"answer"`
	Extract []extractAnswer `yaml:"extract"`
	Utility string          `yaml:"utility"`
	Why     string          `yaml:"why"`
	flow    string          // the fixed flow's path
}

type injectionTask struct {
	ID       string         `yaml:"id"`
	Goal     string         `yaml:"goal"`
	Calls    []plannedCall  `yaml:"calls"`
	Extract  map[string]any `yaml:"extract"`
	Security string         `yaml:"security"`
}

// plannedCall is one call of a ground truth: a tool of the suite's worker
// (or inspect) and its arguments, literals or {$ref: N, field: F}.
type plannedCall struct {
	Tool string         `yaml:"tool"`
	Args map[string]any `yaml:"args"`
	// If is the condition a plan makes the call on, where the prompt
	// makes it conditional: a Starlark expression over the results of
	// earlier calls (r0, r1, …), as the planner writes it from the prompt
	// (its literals must be in the prompt). The agent oracle and the
	// fixed flow do not read it.
	If string `yaml:"if"`
	// Plan gives, for an argument, the expression a plan computes it
	// with where the prompt says how to find it in earlier results (the
	// standing order whose subject says rent): Starlark over r0, r1, …,
	// its literals in the prompt. The agent oracle and the fixed flow do
	// not read it.
	Plan map[string]string `yaml:"plan"`
}

type extractAnswer struct {
	Match  string `yaml:"match"`
	Answer any    `yaml:"answer"`
	// Ask is the question a plan asks inspect for this answer, of the
	// result of the tool From, when the fixed flow asks no such question:
	// what a planner would ask, from the prompt alone. Match must match it.
	Ask  string `yaml:"ask"`
	From string `yaml:"from"`
	re   *regexp.Regexp
}

var placeholder = regexp.MustCompile(`\{\{inject:([A-Za-z0-9_.-]+)\}\}`)

// loadSuite reads and checks a suite's files; every mistake is reported
// with the file it is in.
func loadSuite(root, name string) (*suite, error) {
	dir, err := filepath.Abs(filepath.Join(root, name))
	if err != nil {
		return nil, err
	}
	s := &suite{name: name, dir: dir}
	var manifest struct {
		Worker string `yaml:"worker"`
	}
	if err := decodeYAML(filepath.Join(s.dir, "manifest.yaml"), &manifest, false); err != nil {
		return nil, err
	}
	if manifest.Worker == "" {
		return nil, fmt.Errorf("%s: no worker name", filepath.Join(s.dir, "manifest.yaml"))
	}
	s.worker = manifest.Worker
	if err := readYAML(filepath.Join(s.dir, "environment.yaml"), &s.env); err != nil {
		return nil, err
	}
	s.env = jsonCompatible(s.env)
	if err := readYAML(filepath.Join(s.dir, "vectors.yaml"), &s.vectors); err != nil {
		return nil, err
	}
	if err := s.checkVectors(); err != nil {
		return nil, err
	}
	if err := readYAML(filepath.Join(s.dir, "tasks.yaml"), &s.tasks); err != nil {
		return nil, err
	}
	if err := readYAML(filepath.Join(s.dir, "injections.yaml"), &s.attacks); err != nil {
		return nil, err
	}
	return s, s.checkTasks()
}

func (s *suite) checkVectors() error {
	envJSON, _ := json.Marshal(s.env)
	used := map[string]bool{}
	for _, m := range placeholder.FindAllStringSubmatch(string(envJSON), -1) {
		used[m[1]] = true
		if _, ok := s.vectors[m[1]]; !ok {
			return fmt.Errorf("%s: vector %q is used in environment.yaml but not in vectors.yaml", s.dir, m[1])
		}
	}
	texts := map[string]string{}
	for name, text := range s.vectors {
		if !used[name] {
			return fmt.Errorf("%s: vector %q of vectors.yaml is not in environment.yaml", s.dir, name)
		}
		if text == "" {
			return fmt.Errorf("%s: vector %q has no benign text", s.dir, name)
		}
		if other, ok := texts[text]; ok {
			return fmt.Errorf("%s: vectors %q and %q have the same benign text", s.dir, other, name)
		}
		texts[text] = name
	}
	return nil
}

func (s *suite) checkTasks() error {
	seen := map[string]bool{}
	for _, t := range s.tasks {
		where := fmt.Sprintf("%s/tasks.yaml: %s", s.dir, t.ID)
		if t.ID == "" || seen[t.ID] {
			return fmt.Errorf("%s: a task needs an id of its own", where)
		}
		seen[t.ID] = true
		if t.Prompt == "" || t.Utility == "" {
			return fmt.Errorf("%s: prompt and utility are required", where)
		}
		for i := range t.Extract {
			re, err := regexp.Compile(t.Extract[i].Match)
			if err != nil {
				return fmt.Errorf("%s: extract %d: %v", where, i, err)
			}
			if x := t.Extract[i]; (x.Ask == "") != (x.From == "") || x.Ask != "" && !re.MatchString(x.Ask) {
				return fmt.Errorf("%s: extract %d: ask and from go together, and match must match ask", where, i)
			}
			t.Extract[i].re = re
		}
		t.flow = filepath.Join(s.dir, "flows", t.ID+".yaml")
		if _, err := os.Stat(t.flow); err != nil {
			return fmt.Errorf("%s: no fixed flow: %v", where, err)
		}
		if err := checkRefs(t.Calls, where); err != nil {
			return err
		}
		for i, c := range t.Calls {
			if c.If != "" {
				if err := planCondition(c.If, i, []string{t.Prompt}); err != nil {
					return fmt.Errorf("%s: call %d: if: %v", where, i, err)
				}
			}
			for arg, expr := range c.Plan {
				if _, ok := c.Args[arg]; !ok {
					return fmt.Errorf("%s: call %d: plan: %s is not an argument of the call", where, i, arg)
				}
				if err := planCondition(expr, i, []string{t.Prompt}); err != nil {
					return fmt.Errorf("%s: call %d: plan: %s: %v", where, i, arg, err)
				}
			}
		}
		if _, err := compileCheck(t.Utility, false); err != nil {
			return fmt.Errorf("%s: utility: %v", where, err)
		}
	}
	for _, a := range s.attacks {
		where := fmt.Sprintf("%s/injections.yaml: %s", s.dir, a.ID)
		if a.ID == "" || seen[a.ID] {
			return fmt.Errorf("%s: an injection task needs an id of its own", where)
		}
		seen[a.ID] = true
		if a.Goal == "" || a.Security == "" {
			return fmt.Errorf("%s: goal and security are required", where)
		}
		if err := checkRefs(a.Calls, where); err != nil {
			return err
		}
		if _, err := compileCheck(a.Security, false); err != nil {
			return fmt.Errorf("%s: security: %v", where, err)
		}
	}
	return nil
}

// checkRefs checks that every {$ref: N} names an earlier call.
func checkRefs(calls []plannedCall, where string) error {
	for i, c := range calls {
		if c.Tool == "" {
			return fmt.Errorf("%s: call %d names no tool", where, i)
		}
		var err error
		walkRefs(c.Args, func(r ref) {
			if r.n < 0 || r.n >= i {
				err = fmt.Errorf("%s: call %d refers to call %d, which is not an earlier one", where, i, r.n)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ref is an argument {$ref: N, field: F}.
type ref struct {
	n     int
	field string
}

func asRef(v any) (ref, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return ref{}, false
	}
	n, ok := m["$ref"]
	if !ok {
		return ref{}, false
	}
	f, _ := m["field"].(string)
	switch n := n.(type) {
	case int:
		return ref{n: n, field: f}, true
	case float64:
		return ref{n: int(n), field: f}, true
	}
	return ref{n: -1}, true
}

func walkRefs(v any, fn func(ref)) {
	if r, ok := asRef(v); ok {
		fn(r)
		return
	}
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			walkRefs(x, fn)
		}
	case []any:
		for _, x := range v {
			walkRefs(x, fn)
		}
	}
}

// readYAML decodes a file; only the keys v knows are allowed, unless v
// reads a part of a file whose other parts are Sluice's (a manifest).
func readYAML(path string, v any) error {
	return decodeYAML(path, v, true)
}

func decodeYAML(path string, v any, strict bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(strict)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// jsonCompatible turns YAML's decoded maps into what encoding/json writes.
func jsonCompatible(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = jsonCompatible(x)
		}
		return v
	case map[any]any:
		m := map[string]any{}
		for k, x := range v {
			m[fmt.Sprint(k)] = jsonCompatible(x)
		}
		return m
	case []any:
		for i, x := range v {
			v[i] = jsonCompatible(x)
		}
	}
	return v
}

// environment returns the environment with each vector's text in place:
// texts[name] when given, else the benign text.
func (s *suite) environment(texts map[string]string) (state []byte, vectors map[string]string, err error) {
	vectors = map[string]string{}
	for name, benign := range s.vectors {
		vectors[name] = benign
		if t, ok := texts[name]; ok {
			vectors[name] = t
		}
	}
	var fill func(any) any
	fill = func(v any) any {
		switch v := v.(type) {
		case string:
			return placeholder.ReplaceAllStringFunc(v, func(m string) string {
				return vectors[placeholder.FindStringSubmatch(m)[1]]
			})
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, x := range v {
				out[k] = fill(x)
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, x := range v {
				out[i] = fill(x)
			}
			return out
		}
		return v
	}
	state, err = json.MarshalIndent(fill(s.env), "", "  ")
	return state, vectors, err
}

// suiteNames lists the suites under root.
func suiteNames(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(root, e.Name(), "manifest.yaml")); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, errors.New("no suite under " + root)
	}
	return names, nil
}

var _ = strings.TrimSpace
