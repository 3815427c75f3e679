module github.com/kvserve/kvserve

go 1.26.8
