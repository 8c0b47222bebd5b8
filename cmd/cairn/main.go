// Command cairn is the command line of a Cairn engine: `cairn login https://ADMIN`,
// then `cairn <resource> <verb>`, with `-o json` for scripts.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
