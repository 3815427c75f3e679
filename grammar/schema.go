package grammar

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Grammar is a compiled language. It is immutable and safe for concurrent
// use; NewMatcher starts a generation in it.
type Grammar struct {
	root *node
}

// JSONObject is the grammar of response_format json_object: any JSON
// object.
func JSONObject() *Grammar { return &Grammar{root: objectNode} }

// annotations are schema keywords that do not constrain values.
var annotations = map[string]bool{
	"title": true, "description": true, "default": true, "examples": true, "$schema": true,
	"$id": true, "$comment": true, "deprecated": true, "readOnly": true, "writeOnly": true,
	"$defs": true, "definitions": true, "strict": true,
}

// FromSchema compiles a JSON Schema (the subset OpenAI's strict mode and
// tool parameters use): type (one or a list), properties with required
// and additionalProperties, items with minItems/maxItems, enum, const,
// anyOf/oneOf, $ref to #/$defs or #/definitions (recursion allowed),
// minLength/maxLength, and the annotations (title, description, …).
// Keywords it cannot enforce by construction (pattern, format, minimum,
// …) are an error naming them, never silently dropped.
func FromSchema(schema []byte) (*Grammar, error) {
	root, err := decodeOrdered(schema)
	if err != nil {
		return nil, fmt.Errorf("schema is not JSON: %v", err)
	}
	c := &compiler{root: root, refs: map[string]*node{}}
	n, err := c.compile(root, "#")
	if err != nil {
		return nil, err
	}
	if err := checkProgress(n); err != nil {
		return nil, err
	}
	return &Grammar{root: n}, nil
}

// checkProgress refuses a schema whose references loop without a value
// in between ({"$ref": "#"} alone, or a→b→a): the matcher would step
// through such a loop forever. Only unions (references, anyOf) are
// followed without consuming text, so a loop of unions is the fault.
func checkProgress(root *node) error {
	seen := map[*node]bool{}
	fine := map[*node]bool{}
	var walk func(n *node) error
	walk = func(n *node) error {
		if seen[n] {
			return nil
		}
		seen[n] = true
		if n.kind == kUnion && unionLoop(n, map[*node]bool{}, fine) {
			return fmt.Errorf("$ref: a reference loop that never reaches a value (a schema that is only a reference to itself)")
		}
		for _, a := range n.alts {
			if err := walk(a); err != nil {
				return err
			}
		}
		for _, p := range n.props {
			if err := walk(p.value); err != nil {
				return err
			}
		}
		for _, e := range []*node{n.elem, n.sep} {
			if e != nil {
				if err := walk(e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(root)
}

// unionLoop reports whether following only unions from n comes back to a
// union on the path.
func unionLoop(n *node, path, fine map[*node]bool) bool {
	if n.kind != kUnion || fine[n] {
		return false
	}
	if path[n] {
		return true
	}
	path[n] = true
	for _, a := range n.alts {
		if unionLoop(a, path, fine) {
			return true
		}
	}
	delete(path, n)
	fine[n] = true
	return false
}

// Wrap returns a grammar for text that starts with prefix, then has a
// value of g, then suffix.
func Wrap(prefix string, g *Grammar, suffix string) *Grammar {
	var parts []*node
	if prefix != "" {
		parts = append(parts, lit(prefix))
	}
	parts = append(parts, g.root)
	if suffix != "" {
		parts = append(parts, lit(suffix))
	}
	return &Grammar{root: &node{kind: kSeq, alts: parts}}
}

// Repeat returns a grammar for min to max (−1: any number) texts of g
// separated by sep.
func Repeat(g *Grammar, sep string, min, max int) *Grammar {
	return &Grammar{root: &node{kind: kRepeat, elem: g.root, sep: lit(sep), min: min, max: max}}
}

// OneOf returns a grammar for a text of any of gs.
func OneOf(gs ...*Grammar) *Grammar {
	if len(gs) == 1 {
		return gs[0]
	}
	u := &node{kind: kUnion}
	for _, g := range gs {
		u.alts = append(u.alts, g.root)
	}
	return &Grammar{root: u}
}

// Object returns the grammar of an object with the given properties, all
// required, in order: keys[i] holds a value of values[i].
func Object(keys []string, values []*Grammar) *Grammar {
	n := &node{kind: kObject}
	for i, k := range keys {
		kb, _ := json.Marshal(k)
		n.props = append(n.props, prop{key: string(kb), value: values[i].root, required: true})
	}
	return &Grammar{root: n}
}

// Const returns the grammar of one JSON value, written compactly.
func Const(v any) *Grammar {
	b, _ := json.Marshal(v)
	return &Grammar{root: lit(string(b))}
}

func lit(s string) *node { return &node{kind: kLiteral, lits: []string{s}} }

// literals returns the node of some exact texts, sorted and without
// repeats, as the matcher wants them.
func literals(texts ...string) *node {
	sorted := append([]string(nil), texts...)
	sort.Strings(sorted)
	return &node{kind: kLiteral, lits: slices.Compact(sorted)}
}

type compiler struct {
	root  any
	refs  map[string]*node
	nodes int
}

// Bounds on a schema, so that one request's grammar cannot slow the batch
// it decodes in: the alternatives of one anyOf/oneOf, and the schemas in
// all.
const (
	maxAlternatives = 16
	maxNodes        = 20000
)

func (c *compiler) compile(v any, path string) (*node, error) {
	if c.nodes++; c.nodes > maxNodes {
		return nil, fmt.Errorf("%s: the schema has more than %d subschemas", path, maxNodes)
	}
	switch s := v.(type) {
	case bool:
		if s {
			return anyNode, nil
		}
		return nil, fmt.Errorf("%s: the schema false allows no value", path)
	case map[string]any:
		return c.object(s, path)
	}
	return nil, fmt.Errorf("%s: a schema must be an object or a boolean", path)
}

func (c *compiler) object(s map[string]any, path string) (*node, error) {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	known := map[string]bool{"type": true, "properties": true, "required": true, "additionalProperties": true,
		"items": true, "minItems": true, "maxItems": true, "enum": true, "const": true, "anyOf": true, "oneOf": true,
		"$ref": true, "minLength": true, "maxLength": true, "nullable": true, "propertyOrdering": true}
	for _, k := range keys {
		if !known[k] && !annotations[k] && k != orderKey {
			return nil, fmt.Errorf("%s: the keyword %q is not supported in constrained decoding (supported: type, properties, required, additionalProperties, items, minItems, maxItems, enum, const, anyOf, oneOf, $ref, minLength, maxLength)", path, k)
		}
	}
	if ref, ok := s["$ref"].(string); ok {
		return c.ref(ref, path)
	}
	if e, ok := s["const"]; ok {
		b, err := compact(e)
		if err != nil {
			return nil, fmt.Errorf("%s/const: %v", path, err)
		}
		return lit(b), nil
	}
	if e, ok := s["enum"]; ok {
		list, ok := e.([]any)
		if !ok || len(list) == 0 {
			return nil, fmt.Errorf("%s/enum: want a non-empty list", path)
		}
		var texts []string
		for _, x := range list {
			b, err := compact(x)
			if err != nil {
				return nil, fmt.Errorf("%s/enum: %v", path, err)
			}
			texts = append(texts, b)
		}
		return literals(texts...), nil
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if e, ok := s[kw]; ok {
			list, ok := e.([]any)
			if !ok || len(list) == 0 {
				return nil, fmt.Errorf("%s/%s: want a non-empty list of schemas", path, kw)
			}
			if len(list) > maxAlternatives {
				return nil, fmt.Errorf("%s/%s: %d alternatives; at most %d (each is followed at every byte)", path, kw, len(list), maxAlternatives)
			}
			u := &node{kind: kUnion}
			for i, x := range list {
				a, err := c.compile(x, fmt.Sprintf("%s/%s/%d", path, kw, i))
				if err != nil {
					return nil, err
				}
				u.alts = append(u.alts, a)
			}
			return u, nil
		}
	}
	var types []string
	switch t := s["type"].(type) {
	case nil:
	case string:
		types = []string{t}
	case []any:
		for _, x := range t {
			name, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%s/type: want type names", path)
			}
			types = append(types, name)
		}
	default:
		return nil, fmt.Errorf("%s/type: want a type name or a list of them", path)
	}
	if nullable, _ := s["nullable"].(bool); nullable {
		types = append(types, "null")
	}
	if len(types) == 0 { // no type: guess from the keywords, else any value
		switch {
		case s["properties"] != nil:
			types = []string{"object"}
		case s["items"] != nil:
			types = []string{"array"}
		default:
			return anyNode, nil
		}
	}
	u := &node{kind: kUnion}
	for _, t := range types {
		n, err := c.typed(t, s, path)
		if err != nil {
			return nil, err
		}
		u.alts = append(u.alts, n)
	}
	if len(u.alts) == 1 {
		return u.alts[0], nil
	}
	return u, nil
}

func (c *compiler) typed(t string, s map[string]any, path string) (*node, error) {
	switch t {
	case "null":
		return lit("null"), nil
	case "boolean":
		return literals("true", "false"), nil
	case "integer":
		return &node{kind: kInteger}, nil
	case "number":
		return &node{kind: kNumber}, nil
	case "string":
		lo, hi, err := bounds(s, "minLength", "maxLength", path)
		if err != nil {
			return nil, err
		}
		return &node{kind: kString, min: lo, max: hi}, nil
	case "array":
		lo, hi, err := bounds(s, "minItems", "maxItems", path)
		if err != nil {
			return nil, err
		}
		items := anyNode
		if it, ok := s["items"]; ok {
			if items, err = c.compile(it, path+"/items"); err != nil {
				return nil, err
			}
		}
		if hi == 0 {
			return lit("[]"), nil
		}
		return &node{kind: kArray, elem: items, min: lo, max: hi}, nil
	case "object":
		props, _ := s["properties"].(map[string]any)
		if props == nil {
			elem := anyNode
			if ap, ok := s["additionalProperties"]; ok {
				if b, isBool := ap.(bool); isBool && !b {
					return lit("{}"), nil
				}
				var err error
				if elem, err = c.compile(ap, path+"/additionalProperties"); err != nil {
					return nil, err
				}
			}
			return &node{kind: kMap, elem: elem}, nil
		}
		required := map[string]bool{}
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				name, _ := r.(string)
				if _, ok := props[name]; !ok {
					return nil, fmt.Errorf("%s/required: %q is not among the properties", path, name)
				}
				required[name] = true
			}
		}
		n := &node{kind: kObject}
		for _, name := range propertyOrder(s, props) {
			v, err := c.compile(props[name], path+"/properties/"+name)
			if err != nil {
				return nil, err
			}
			kb, _ := json.Marshal(name)
			n.props = append(n.props, prop{key: string(kb), value: v, required: required[name]})
		}
		return n, nil
	}
	return nil, fmt.Errorf("%s/type: unknown type %q", path, t)
}

// propertyOrder returns the properties in the order the schema's text
// lists them (Go maps lose it), by looking each key up in a re-encoding
// that keeps order; propertyOrdering, if given, wins.
func propertyOrder(s map[string]any, props map[string]any) []string {
	if po, ok := s["propertyOrdering"].([]any); ok {
		var out []string
		for _, p := range po {
			if name, ok := p.(string); ok {
				if _, ok := props[name]; ok {
					out = append(out, name)
				}
			}
		}
		if _, has := props[orderKey]; len(out) == len(props) || (has && len(out) == len(props)-1) {
			return out
		}
	}
	if o, ok := props[orderKey].([]string); ok {
		return o
	}
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// orderKey is where decodeOrdered keeps an object's key order.
const orderKey = "\x00order"

func bounds(s map[string]any, lo, hi, path string) (int, int, error) {
	get := func(k string, def int) (int, error) {
		v, ok := s[k]
		if !ok {
			return def, nil
		}
		num, ok := v.(json.Number)
		if !ok {
			return 0, fmt.Errorf("%s/%s: want a non-negative integer", path, k)
		}
		i, err := num.Int64()
		if err != nil || i < 0 || i > 1<<20 {
			return 0, fmt.Errorf("%s/%s: want a non-negative integer", path, k)
		}
		return int(i), nil
	}
	a, err := get(lo, 0)
	if err != nil {
		return 0, 0, err
	}
	b, err := get(hi, -1)
	if err != nil {
		return 0, 0, err
	}
	if b >= 0 && b < a {
		return 0, 0, fmt.Errorf("%s: %s %d is less than %s %d", path, hi, b, lo, a)
	}
	return a, b, nil
}

func (c *compiler) ref(ref, path string) (*node, error) {
	if n, ok := c.refs[ref]; ok {
		return n, nil
	}
	var target any
	switch {
	case ref == "#":
		target = c.root
	case strings.HasPrefix(ref, "#/$defs/") || strings.HasPrefix(ref, "#/definitions/"):
		parts := strings.SplitN(strings.TrimPrefix(ref, "#/"), "/", 2)
		defs, _ := c.root.(map[string]any)[parts[0]].(map[string]any)
		target = defs[strings.ReplaceAll(strings.ReplaceAll(parts[1], "~1", "/"), "~0", "~")]
	default:
		return nil, fmt.Errorf("%s/$ref: only references into #/$defs or #/definitions are supported, not %q", path, ref)
	}
	if target == nil {
		return nil, fmt.Errorf("%s/$ref: %q names no schema", path, ref)
	}
	// A placeholder union stands for the target while it compiles, so
	// that recursive references close the loop.
	ph := &node{kind: kUnion}
	c.refs[ref] = ph
	n, err := c.compile(target, ref)
	if err != nil {
		return nil, err
	}
	ph.alts = []*node{n}
	return ph, nil
}
