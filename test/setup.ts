// Loaded into every test process before its file (package.json "tap" "node-arg": --import): an
// unhandled rejection anywhere (the library, a helper, the test itself) fails the file, with the
// rejection on standard error. Node's default does much the same, but a flag
// (--unhandled-rejections=warn) or a listener some module adds would turn it into a warning
// nobody reads; this holds whatever the flags, and names the file.

process.on('unhandledRejection', function failOnUnhandledRejection(reason: unknown): void {
  const what = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)
  process.stderr.write(`${process.argv[1] ?? 'a test file'}: unhandled rejection: ${what}\n`)
  process.exit(1)
})
