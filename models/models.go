// Package models carries kvserve's bundled default model, tinychat, inside the
// binary, so that a fresh clone or a copied binary runs offline with no
// --model flag.
package models

import (
	"embed"
	"io/fs"
)

//go:embed tinychat
var files embed.FS

// DefaultName is the name the CLI shows for the bundled model.
const DefaultName = "tinychat"

// TinyChat returns the bundled tinychat model folder (config.json,
// safetensors shards, tokenizer.json, chat template) as a file system.
func TinyChat() fs.FS {
	sub, err := fs.Sub(files, "tinychat")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
