// Package grammar constrains generation to a formal language: JSON values
// that follow a JSON Schema (OpenAI's response_format json_object and
// json_schema, and tool-call arguments), wrapped in literal text where a
// tool-call format needs it. A schema compiles to a graph of nodes; a
// Matcher follows the text generated so far with a pushdown automaton over
// bytes and gives, before each token, the set of vocabulary tokens that
// can come next (a bit mask), computed by walking the vocabulary sorted by
// bytes so that tokens sharing a prefix share the work, with the plain
// tokens of string contents precomputed (the idea of llama.cpp's GBNF
// sampler and XGrammar's context-independent tokens).
//
// The language is that of the schema's values written compactly, as
// json.Marshal writes them, except that one space may follow each ':' and
// ','; object properties come in the schema's order; optional properties
// may be left out; numbers have at most 16 integer and 16 fraction digits;
// nesting is at most MaxDepth deep.
package grammar

// kind is what a node matches.
type kind uint8

const (
	kObject  kind = iota // an object with the given properties, in order
	kMap                 // an object with any keys, values of one node
	kArray               // an array of one node
	kString              // a string
	kNumber              // a number
	kInteger             // an integer
	kLiteral             // one of some exact texts (enum, const, true, …)
	kUnion               // any one of some nodes
	kSeq                 // some nodes one after another
	kRepeat              // one node repeated, separated by a literal
	kRoot                // the whole text: one node, then the end
)

// node is a piece of the language.
type node struct {
	kind  kind
	props []prop   // kObject
	elem  *node    // kMap values, kArray items, kRepeat item
	sep   *node    // kRepeat separator
	lits  []string // kLiteral, sorted, no repeats
	alts  []*node  // kUnion alternatives, kSeq parts
	min   int      // kArray items, kString characters, kRepeat repetitions
	max   int      // the same; -1 for no bound
}

// prop is an object property: its key as JSON text (quotes included).
type prop struct {
	key      string
	value    *node
	required bool
}

// MaxDepth is the most nested values (objects, arrays, strings) the
// matcher follows; deeper nesting is not generated.
const MaxDepth = 48

// Limits on numbers, so that generation cannot run on digits forever.
const (
	maxIntDigits  = 16
	maxFracDigits = 16
	maxExpDigits  = 2
)

var (
	anyNode    *node // any JSON value
	objectNode *node // any JSON object
)

func init() {
	anyNode = &node{kind: kUnion}
	objectNode = &node{kind: kMap, elem: anyNode}
	anyNode.alts = []*node{
		objectNode,
		{kind: kArray, elem: anyNode, max: -1},
		{kind: kString, max: -1},
		{kind: kNumber},
		literals("true", "false", "null"),
	}
}
