module coromesh.bench/go-hello

go 1.22
