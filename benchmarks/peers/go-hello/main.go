// go-hello: the Go peer of the http benchmark suite, what many teams write instead of
// a C++ service: net/http's default server, one handler, `GET <anything>` -> 200
// "hello". Standard library only. GOMAXPROCS sets its threads (the suite sets 1 or 2).
//
//	go-hello -port N
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
)

func main() {
	port := flag.Int("port", 0, "port to listen on (127.0.0.1)")
	flag.Parse()
	if *port <= 0 || *port > 65535 {
		log.Fatal("go-hello: -port N is required")
	}
	hello := []byte("hello")
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(hello)
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:"+strconv.Itoa(*port), nil))
}
