//go:build nobundle

package models

import "io/fs"

// TinyChat returns nil: this binary was built without the bundled model.
func TinyChat() fs.FS { return nil }
