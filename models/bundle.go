//go:build !nobundle

package models

import (
	"embed"
	"io/fs"
)

//go:embed tinychat
var files embed.FS

// TinyChat returns the bundled tinychat model folder (config.json,
// safetensors shards, tokenizer.json, chat template) as a file system.
func TinyChat() fs.FS {
	sub, err := fs.Sub(files, "tinychat")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
