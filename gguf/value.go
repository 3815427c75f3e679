package gguf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ValueType is the type tag of a GGUF metadata value.
type ValueType uint32

// The GGUF metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	TypeUint8:   "uint8",
	TypeInt8:    "int8",
	TypeUint16:  "uint16",
	TypeInt16:   "int16",
	TypeUint32:  "uint32",
	TypeInt32:   "int32",
	TypeFloat32: "float32",
	TypeBool:    "bool",
	TypeString:  "string",
	TypeArray:   "array",
	TypeUint64:  "uint64",
	TypeInt64:   "int64",
	TypeFloat64: "float64",
}

// String returns the type's name ("uint32", "string", "array", …).
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(t))
}

// fixedSize returns the encoded size of a scalar of type t, 0 for string
// and array, and -1 for an unknown type.
func (t ValueType) fixedSize() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	case TypeString, TypeArray:
		return 0
	}
	return -1
}

// Value is one metadata value. A scalar holds the Go type matching its
// Type (uint8 … int64, float32, float64, bool, string). An array holds a
// slice of its element type ([]uint8 … []float64, []bool, []string), or
// []Value for an array of arrays. The As… methods convert with range
// checks; Any returns the held value itself.
type Value struct {
	// Type is the value's type tag.
	Type ValueType
	// ElemType is the element type when Type is TypeArray.
	ElemType ValueType
	v        any
}

// Any returns the held Go value (see Value).
func (v Value) Any() any { return v.v }

// Len returns the element count of an array value, or 0 for a scalar.
func (v Value) Len() int {
	switch a := v.v.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float32:
		return len(a)
	case []float64:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []Value:
		return len(a)
	}
	return 0
}

// AsUint returns an integer value of any width as uint64; ok is false for
// a negative or non-integer value.
func (v Value) AsUint() (uint64, bool) {
	switch x := v.v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	}
	if i, ok := v.signed(); ok && i >= 0 {
		return uint64(i), true
	}
	return 0, false
}

func (v Value) signed() (int64, bool) {
	switch x := v.v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

// AsInt returns an integer value of any width as int64; ok is false for a
// non-integer value or a uint64 above math.MaxInt64.
func (v Value) AsInt() (int64, bool) {
	if i, ok := v.signed(); ok {
		return i, true
	}
	if u, ok := v.AsUint(); ok && u <= math.MaxInt64 {
		return int64(u), true
	}
	return 0, false
}

// AsFloat returns a float32 or float64 value as float64. Integer values
// are converted too, so a writer's choice of numeric type does not matter.
func (v Value) AsFloat() (float64, bool) {
	switch x := v.v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	if i, ok := v.signed(); ok {
		return float64(i), true
	}
	if u, ok := v.AsUint(); ok {
		return float64(u), true
	}
	return 0, false
}

// AsBool returns a bool value.
func (v Value) AsBool() (bool, bool) {
	b, ok := v.v.(bool)
	return b, ok
}

// AsString returns a string value.
func (v Value) AsString() (string, bool) {
	s, ok := v.v.(string)
	return s, ok
}

// AsStrings returns an array of strings. The slice is the Value's own;
// do not modify it.
func (v Value) AsStrings() ([]string, bool) {
	s, ok := v.v.([]string)
	return s, ok
}

// AsInts returns an array of any integer type as a new []int64; ok is
// false for other arrays or a uint64 element above math.MaxInt64.
func (v Value) AsInts() ([]int64, bool) {
	switch a := v.v.(type) {
	case []uint8:
		return convertSlice(a, func(x uint8) int64 { return int64(x) }), true
	case []int8:
		return convertSlice(a, func(x int8) int64 { return int64(x) }), true
	case []uint16:
		return convertSlice(a, func(x uint16) int64 { return int64(x) }), true
	case []int16:
		return convertSlice(a, func(x int16) int64 { return int64(x) }), true
	case []uint32:
		return convertSlice(a, func(x uint32) int64 { return int64(x) }), true
	case []int32:
		return convertSlice(a, func(x int32) int64 { return int64(x) }), true
	case []int64:
		return append([]int64(nil), a...), true
	case []uint64:
		for _, x := range a {
			if x > math.MaxInt64 {
				return nil, false
			}
		}
		return convertSlice(a, func(x uint64) int64 { return int64(x) }), true
	}
	return nil, false
}

// AsFloats returns an array of float32 or float64 (or of integers) as a
// new []float64.
func (v Value) AsFloats() ([]float64, bool) {
	switch a := v.v.(type) {
	case []float32:
		return convertSlice(a, func(x float32) float64 { return float64(x) }), true
	case []float64:
		return append([]float64(nil), a...), true
	case []uint64:
		return convertSlice(a, func(x uint64) float64 { return float64(x) }), true
	}
	if is, ok := v.AsInts(); ok {
		return convertSlice(is, func(x int64) float64 { return float64(x) }), true
	}
	return nil, false
}

func convertSlice[S, D any](src []S, f func(S) D) []D {
	dst := make([]D, len(src))
	for i, x := range src {
		dst[i] = f(x)
	}
	return dst
}

// String formats the value for people: numbers and bools as Go prints
// them, strings quoted, arrays as "[n]type{…}" showing at most 8 elements.
func (v Value) String() string {
	switch x := v.v.(type) {
	case string:
		return strconv.Quote(x)
	case []string:
		return formatArray(v.ElemType, len(x), func(i int) string { return strconv.Quote(x[i]) })
	case []Value:
		return formatArray(v.ElemType, len(x), func(i int) string { return x[i].String() })
	case nil:
		return "<nil>"
	}
	if v.Type == TypeArray {
		n := v.Len()
		return formatArray(v.ElemType, n, func(i int) string { return fmt.Sprint(indexAny(v.v, i)) })
	}
	return fmt.Sprint(v.v)
}

func formatArray(elem ValueType, n int, item func(int) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%d]%s{", n, elem)
	for i := 0; i < n && i < 8; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(item(i))
	}
	if n > 8 {
		b.WriteString(", …")
	}
	b.WriteString("}")
	return b.String()
}

func indexAny(a any, i int) any {
	switch s := a.(type) {
	case []uint8:
		return s[i]
	case []int8:
		return s[i]
	case []uint16:
		return s[i]
	case []int16:
		return s[i]
	case []uint32:
		return s[i]
	case []int32:
		return s[i]
	case []uint64:
		return s[i]
	case []int64:
		return s[i]
	case []float32:
		return s[i]
	case []float64:
		return s[i]
	case []bool:
		return s[i]
	}
	return nil
}
