package grammar

import (
	"fmt"
	"strings"
)

// Validate checks a decoded JSON value (as json.Unmarshal into any gives
// it) against a decoded JSON Schema, for the keywords FromSchema takes.
// It is written apart from the compiler, so that tests of generated text
// do not trust the grammar to judge itself.
func Validate(schema, value any) error {
	return validate(schema, schema, value, "$")
}

func validate(root, schema, value any, path string) error {
	s, _ := schema.(map[string]any)
	if ref, ok := s["$ref"].(string); ok {
		if ref == "#" {
			return validate(root, root, value, path)
		}
		parts := strings.SplitN(strings.TrimPrefix(ref, "#/"), "/", 2)
		rootMap, _ := root.(map[string]any)
		defs, _ := rootMap[parts[0]].(map[string]any)
		if len(parts) != 2 || defs[parts[1]] == nil {
			return fmt.Errorf("%s: $ref %q names no schema", path, ref)
		}
		return validate(root, defs[parts[1]], value, path)
	}
	if b, ok := schema.(bool); ok && !b {
		return fmt.Errorf("%s: the schema false allows nothing", path)
	}
	if c, ok := s["const"]; ok && fmt.Sprint(c) != fmt.Sprint(value) {
		return fmt.Errorf("%s: %v is not the const %v", path, value, c)
	}
	if e, ok := s["enum"].([]any); ok {
		found := false
		for _, x := range e {
			found = found || fmt.Sprint(x) == fmt.Sprint(value)
		}
		if !found {
			return fmt.Errorf("%s: %v is not in the enum", path, value)
		}
	}
	alts, ok := s["anyOf"].([]any)
	if !ok {
		alts, ok = s["oneOf"].([]any)
	}
	if ok {
		for _, a := range alts {
			if validate(root, a, value, path) == nil {
				return nil
			}
		}
		return fmt.Errorf("%s: %v matches no alternative", path, value)
	}
	var types []string
	switch t := s["type"].(type) {
	case string:
		types = []string{t}
	case []any:
		for _, x := range t {
			types = append(types, x.(string))
		}
	}
	if len(types) > 0 {
		ok := false
		for _, t := range types {
			switch x := value.(type) {
			case nil:
				ok = ok || t == "null"
			case bool:
				ok = ok || t == "boolean"
			case float64:
				ok = ok || t == "number" || (t == "integer" && x == float64(int64(x)))
			case string:
				ok = ok || t == "string"
			case []any:
				ok = ok || t == "array"
			case map[string]any:
				ok = ok || t == "object"
			}
		}
		if !ok {
			return fmt.Errorf("%s: %v is not of type %v", path, value, types)
		}
	}
	switch x := value.(type) {
	case string:
		n := len([]rune(x))
		if lo, ok := s["minLength"].(float64); ok && n < int(lo) {
			return fmt.Errorf("%s: %q shorter than %v", path, x, lo)
		}
		if hi, ok := s["maxLength"].(float64); ok && n > int(hi) {
			return fmt.Errorf("%s: %q longer than %v", path, x, hi)
		}
	case []any:
		if lo, ok := s["minItems"].(float64); ok && len(x) < int(lo) {
			return fmt.Errorf("%s: %d items, fewer than %v", path, len(x), lo)
		}
		if hi, ok := s["maxItems"].(float64); ok && len(x) > int(hi) {
			return fmt.Errorf("%s: %d items, more than %v", path, len(x), hi)
		}
		for i, e := range x {
			if it, ok := s["items"]; ok {
				if err := validate(root, it, e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			if name, _ := r.(string); x[name] == nil {
				if _, ok := x[name]; ok {
					continue
				}
				return fmt.Errorf("%s: required %q missing", path, r)
			}
		}
		for k, e := range x {
			ps, ok := props[k]
			if ap, isBool := s["additionalProperties"].(bool); !ok && isBool && !ap {
				return fmt.Errorf("%s: property %q not allowed", path, k)
			}
			if ok {
				if err := validate(root, ps, e, path+"."+k); err != nil {
					return err
				}
			} else if ap, ok := s["additionalProperties"].(map[string]any); ok {
				if err := validate(root, ap, e, path+"."+k); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
