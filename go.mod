module github.com/kvserve/kvserve

go 1.26.8

require (
	github.com/ardanlabs/jinja v1.8.0
	github.com/redis/go-redis/v9 v9.23.0
	golang.org/x/image v0.30.0
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
)
