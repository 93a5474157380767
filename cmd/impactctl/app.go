package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// Defaults of the global flags.
const (
	defaultAddr    = "127.0.0.1:9091"
	defaultDataDir = "./.impact-dev"
	defaultTimeout = 30 * time.Second
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// app holds one invocation's I/O, global flags and connection.
type app struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)

	addr     string
	token    string
	dataDir  string
	jsonOut  bool
	timeout  time.Duration
	insecure bool
	// TLS material for an ops listener with TLS or mutual TLS
	// (impactd --tls-cert ... --admin-client-ca ...).
	caFile, certFile, keyFile string

	root *cobra.Command
	conn *grpc.ClientConn
	// ran is set once a command's action starts: errors before that are
	// usage errors.
	ran bool
	// details are extra lines printed to stderr before the one-line
	// reason (a rejected upload's violations).
	details string
}

func newApp(stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) *app {
	a := &app{stdout: stdout, stderr: stderr, lookupEnv: lookupEnv}
	a.root = a.rootCommand()
	return a
}

func (a *app) env(name, def string) string {
	if v, ok := a.lookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "impactctl",
		Short: "Operate Impact: snapshots, notices, dev tokens, demo data",
		Long: `impactctl operates Impact, the "am I affected?" status service.

It talks to impactd's ops gRPC listener (--addr, IMPACT_ADDR) with a bearer
token (--token, IMPACT_TOKEN) that carries the impact.admin scope (snapshots)
or the impact.notify scope (notices). Plaintext is used for loopback
addresses, TLS otherwise, unless --insecure says so.

A first run on one machine:
  impactctl demo --out demo
  export IMPACT_TOKEN=$(impactctl dev token --sub ops --scope impact.admin --scope impact.notify)
  impactctl snapshot upload --incident mmh-2025-12 --spec demo/spec.yaml --roster demo/roster.csv
  impactctl snapshot publish --incident mmh-2025-12 --version 1
  impactctl notice claim --incident mmh-2025-12 --roster demo/roster.csv --cohort northland --out wave1.jsonl
  impactctl notice stats --incident mmh-2025-12`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", a.env("IMPACT_ADDR", defaultAddr), "impactd ops gRPC listener, HOST:PORT (env IMPACT_ADDR)")
	pf.StringVar(&a.token, "token", a.env("IMPACT_TOKEN", ""), "bearer token (JWT) (env IMPACT_TOKEN)")
	pf.BoolVar(&a.jsonOut, "json", false, "print JSON (protojson with proto field names) instead of tables")
	pf.DurationVar(&a.timeout, "timeout", defaultTimeout, "deadline of each call; uploads and waves have none unless this is set")
	pf.BoolVar(&a.insecure, "insecure", false, "use plaintext instead of TLS (default: plaintext for loopback addresses only)")
	pf.StringVar(&a.caFile, "ca-file", a.env("IMPACT_CA_FILE", ""), "PEM CA bundle that signed impactd's certificate (default: the system roots) (env IMPACT_CA_FILE)")
	pf.StringVar(&a.certFile, "cert", a.env("IMPACT_CERT", ""), "PEM client certificate for an ops listener with mutual TLS (env IMPACT_CERT)")
	pf.StringVar(&a.keyFile, "key", a.env("IMPACT_KEY", ""), "PEM private key of --cert (env IMPACT_KEY)")
	pf.StringVar(&a.dataDir, "data-dir", a.env("IMPACT_DATA_DIR", defaultDataDir), "impactd --dev data directory, for dev tokens (env IMPACT_DATA_DIR)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return err })

	root.AddCommand(a.snapshotCommand(), a.noticeCommand(), a.subjectCommand(), a.auditCommand(), a.devCommand(), a.demoCommand(),
		a.practiceCommand()) // practice.go
	return root
}

// run executes args and returns the exit status; errors are printed to
// stderr as one line (after any details).
func (a *app) run(ctx context.Context, args []string) int {
	a.root.SetArgs(args)
	a.root.SetOut(a.stdout)
	a.root.SetErr(a.stderr)
	cmd, err := a.root.ExecuteContextC(ctx)
	if a.conn != nil {
		a.conn.Close()
	}
	if err == nil {
		return exitOK
	}
	if a.details != "" {
		io.WriteString(a.stderr, a.details)
	}
	name := ""
	if cmd != nil && cmd != a.root && a.ran {
		name = cmd.Name()
	}
	line := errorLine(name, err)
	var ue usageError
	usage := !a.ran || errors.As(err, &ue)
	if usage && cmd != nil {
		line += " (see '" + cmd.CommandPath() + " --help')"
	}
	fmt.Fprintln(a.stderr, line)
	if usage {
		return exitUsage
	}
	return exitError
}

// action wraps a command's body so that run can tell usage errors (found
// by cobra before the body runs) from failures.
func (a *app) action(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.ran = true
		return fn(cmd, args)
	}
}

// client returns the connection to impactd, dialling it on first use.
func (a *app) client() (*grpc.ClientConn, error) {
	if a.conn != nil {
		return a.conn, nil
	}
	if a.addr == "" {
		return nil, errors.New("no address: set --addr or IMPACT_ADDR")
	}
	tlsSet := a.caFile != "" || a.certFile != "" || a.keyFile != ""
	plaintext := a.insecure
	if !a.root.PersistentFlags().Changed("insecure") {
		plaintext = isLoopback(a.addr) && !tlsSet
	}
	if plaintext && tlsSet {
		return nil, usageError("--ca-file, --cert and --key need TLS; drop --insecure")
	}
	creds := insecure.NewCredentials()
	if !plaintext {
		cfg, err := a.tlsConfig()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("address %s: %w", a.addr, err)
	}
	a.conn = conn
	return conn, nil
}

// tlsConfig is the client side of TLS to the ops listener: the system roots
// or --ca-file, and a client certificate when --cert/--key are given.
func (a *app) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if a.caFile != "" {
		pem, err := os.ReadFile(a.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", a.caFile)
		}
	}
	if (a.certFile == "") != (a.keyFile == "") {
		return nil, usageError("--cert and --key go together")
	}
	if a.certFile != "" {
		cert, err := tls.LoadX509KeyPair(a.certFile, a.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (a *app) snapshots() (impactv1.SnapshotServiceClient, error) {
	conn, err := a.client()
	if err != nil {
		return nil, err
	}
	return impactv1.NewSnapshotServiceClient(conn), nil
}

func (a *app) notices() (impactv1.NoticeServiceClient, error) {
	conn, err := a.client()
	if err != nil {
		return nil, err
	}
	return impactv1.NewNoticeServiceClient(conn), nil
}

// callAndRender runs the one unary call of a command: it dials impactd
// (newClient wraps the connection in the service's client), makes the call
// with the token and the --timeout deadline, then prints the answer as
// protojson under --json, else through render. A failed call's error is
// returned as call returned it.
func callAndRender[C any, R proto.Message](a *app, cmd *cobra.Command, newClient func(grpc.ClientConnInterface) C,
	call func(context.Context, C) (R, error), render func(R) error) error {
	conn, err := a.client()
	if err != nil {
		return err
	}
	ctx, cancel := a.callCtx(cmd.Context())
	defer cancel()
	resp, err := call(ctx, newClient(conn))
	if err != nil {
		return err
	}
	if a.jsonOut {
		return a.printProto(resp)
	}
	return render(resp)
}

// callCtx returns the context of one unary call: the token and the
// --timeout deadline.
func (a *app) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	return a.withToken(ctx), cancel
}

// streamCtx returns the context of a long stream (upload, wave): the
// token, and a deadline only when --timeout was given.
func (a *app) streamCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	var cancel context.CancelFunc
	if a.root.PersistentFlags().Changed("timeout") {
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	return a.withToken(ctx), cancel
}

func (a *app) withToken(ctx context.Context) context.Context {
	if a.token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+a.token)
}

// isLoopback reports whether addr (HOST:PORT) names the local machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// printProto prints m as protojson with proto field names.
func (a *app) printProto(m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true, Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", b)
	return err
}

// interactive reports whether progress bars should be drawn: stderr is a
// terminal and the output is not JSON.
func (a *app) interactive() bool {
	if a.jsonOut {
		return false
	}
	f, ok := a.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
