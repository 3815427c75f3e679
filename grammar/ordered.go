package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// decodeOrdered decodes JSON like json.Unmarshal into any, with numbers as
// json.Number, but every object also keeps its keys' order under
// orderKey (a []string), which a schema's property order needs.
func decodeOrdered(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > 256 {
		return nil, errors.New("nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '[':
		list := []any{}
		for dec.More() {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		_, err := dec.Token()
		return list, err
	case '{':
		obj := map[string]any{}
		var order []string
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string)
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			if _, dup := obj[k]; !dup {
				order = append(order, k)
			}
			obj[k] = v
		}
		obj[orderKey] = order
		_, err := dec.Token()
		return obj, err
	}
	return nil, errors.New("unexpected delimiter")
}

// encodeOrdered writes a value of decodeOrdered compactly, objects in
// their keys' order.
func encodeOrdered(buf *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case map[string]any:
		order, _ := x[orderKey].([]string)
		buf.WriteByte('{')
		for i, k := range order {
			if i > 0 {
				buf.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			buf.Write(kb)
			buf.WriteByte(':')
			if err := encodeOrdered(buf, x[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeOrdered(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	}
	b, err := json.Marshal(v)
	buf.Write(b)
	return err
}

// compact returns v written by encodeOrdered.
func compact(v any) (string, error) {
	var buf bytes.Buffer
	err := encodeOrdered(&buf, v)
	return buf.String(), err
}
