// Package models carries kvserve's bundled default model, tinychat, inside the
// binary, so that a fresh clone or a copied binary runs offline with no
// --model flag. Building with -tags nobundle leaves it out (28 MB less);
// such a binary needs --model.
package models

// DefaultName is the name the CLI shows for the bundled model.
const DefaultName = "tinychat"
