package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// duplicateKey returns the first object key that appears twice in one
// object of the JSON text data, or "" when there is none. encoding/json
// keeps the last of repeated keys, while a proxy or log reader in front of
// the broker may read the first, so the two could act on different
// requests. Where the text is malformed, keys before the fault are checked
// and the rest is left to the decoder to report.
func duplicateKey(data []byte) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		expect bool // the next string token in this object is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) || err != nil {
			return ""
		}
		top := len(stack) - 1
		if top >= 0 && stack[top].object && stack[top].expect {
			if key, ok := tok.(string); ok {
				if stack[top].keys[key] {
					return key
				}
				stack[top].keys[key] = true
				stack[top].expect = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, keys: map[string]bool{}, expect: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:top]
		}
		// A value ended: the enclosing object expects a key next.
		if n := len(stack) - 1; n >= 0 && stack[n].object {
			stack[n].expect = true
		}
	}
}
