// Command ferretdb runs FerretDB v1 through its embeddable package, with the v1 command's flag names.
//
// The upstream cmd/ferretdb refuses to start when built from the Go module proxy (its version file is
// generated in FerretDB's own repository and is absent from the module), so the project builds this
// small wrapper instead. Telemetry is always off in the embeddable package.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	handler := flag.String("handler", "sqlite", "backend handler: sqlite or postgresql")
	sqliteURL := flag.String("sqlite-url", "file:data/", "SQLite URI (a directory, ending with /)")
	pgURL := flag.String("postgresql-url", "", "PostgreSQL URL for the postgresql handler")
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	flag.String("state-dir", ".", "accepted for compatibility with the v1 command; unused")
	flag.String("telemetry", "disable", "accepted for compatibility with the v1 command; always disabled")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	// The heap of a busy server is small (tens of MB) and collected often: at Go's default (100) the
	// collector took ~15% of the CPU of bulk updates; at 400, ~4%. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: bad --log-level: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Logger:        logger,
		Handler:       *handler,
		SQLiteURL:     *sqliteURL,
		PostgreSQLURL: *pgURL,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	go func() {
		// MongoDBURI waits until the listener is bound, so this line means "accepting connections".
		fmt.Fprintf(os.Stdout, "ferretdb listening %s\n", f.MongoDBURI())
	}()

	if err := f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
}
