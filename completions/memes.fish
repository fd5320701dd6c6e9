# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_memes_global_optspecs
    string join \n socket= url= json color= h/help V/version
end

function __fish_memes_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_memes_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_memes_using_subcommand
    set -l cmd (__fish_memes_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c memes -n "__fish_memes_needs_command" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_needs_command" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_needs_command" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_needs_command" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_needs_command" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_needs_command" -s V -l version -d 'Print version'
complete -c memes -n "__fish_memes_needs_command" -f -a "get" -d 'Get a meme (charged only when delivered)'
complete -c memes -n "__fish_memes_needs_command" -f -a "topup" -d 'Add tokens to a balance, or deduct them with a negative amount (admins)'
complete -c memes -n "__fish_memes_needs_command" -f -a "balance" -d 'Show a balance and tier'
complete -c memes -n "__fish_memes_needs_command" -f -a "lots" -d 'List the lots a balance is made of, in the order they are spent'
complete -c memes -n "__fish_memes_needs_command" -f -a "hold" -d 'Set tokens of a balance aside until captured, voided or expired (admins)'
complete -c memes -n "__fish_memes_needs_command" -f -a "capture" -d 'End a hold by spending (part of) it; the rest goes back (admins)'
complete -c memes -n "__fish_memes_needs_command" -f -a "void" -d 'End a hold by giving all of it back (admins)'
complete -c memes -n "__fish_memes_needs_command" -f -a "refund" -d 'Give back (part of) a charge, to the lots it came from (admins)'
complete -c memes -n "__fish_memes_needs_command" -f -a "history" -d 'Show a user\'s ledger entries, oldest first'
complete -c memes -n "__fish_memes_needs_command" -f -a "search" -d 'Browse ranked matches for a query, by its words and its meaning, free of charge'
complete -c memes -n "__fish_memes_needs_command" -f -a "similar" -d 'List the memes nearest in meaning to one meme, free of charge'
complete -c memes -n "__fish_memes_needs_command" -f -a "entitle" -d 'Set a user\'s tier (admins)'
complete -c memes -n "__fish_memes_needs_command" -f -a "audit" -d 'Replay the whole ledger and check every invariant (admins), or an export offline (--export FILE); exit 1 on a discrepancy'
complete -c memes -n "__fish_memes_needs_command" -f -a "reload" -d 'Reload the meme catalogue and the admin keys from their files (admins; same as SIGHUP)'
complete -c memes -n "__fish_memes_needs_command" -f -a "status" -d 'Show the daemon\'s version, uptime and counts'
complete -c memes -n "__fish_memes_needs_command" -f -a "stop" -d 'Stop the memesd on this socket (and no other), and wait until it has finished'
complete -c memes -n "__fish_memes_needs_command" -f -a "bench" -d 'Measure memesd: throughput and latency percentiles under load'
complete -c memes -n "__fish_memes_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c memes -n "__fish_memes_needs_command" -f -a "admin-key" -d 'Make admin keys for memesd\'s HTTP API (local; no daemon needed)'
complete -c memes -n "__fish_memes_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memes -n "__fish_memes_using_subcommand get" -l user -d 'The user to charge' -r
complete -c memes -n "__fish_memes_using_subcommand get" -l lat -d 'Latitude in decimal degrees (-90 to 90), with --long' -r
complete -c memes -n "__fish_memes_using_subcommand get" -l long -l lon -d 'Longitude in decimal degrees (-180 to 180), with --lat' -r
complete -c memes -n "__fish_memes_using_subcommand get" -l query -d 'What the meme should be about (typos forgiven)' -r
complete -c memes -n "__fish_memes_using_subcommand get" -l count -d 'Deliver this many distinct memes (1-10), charged together, all or nothing' -r
complete -c memes -n "__fish_memes_using_subcommand get" -l out -d 'With --generate: write the PNG here' -r -F
complete -c memes -n "__fish_memes_using_subcommand get" -l token -d 'A signed claim (JWT) for this user, e.g. one that makes the request premium' -r
complete -c memes -n "__fish_memes_using_subcommand get" -l idempotency-key -d 'Makes retries safe: the same key with the same request is answered with the first reply and charged once' -r
complete -c memes -n "__fish_memes_using_subcommand get" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand get" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand get" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand get" -l nsfw -d 'Allow memes flagged not safe for work'
complete -c memes -n "__fish_memes_using_subcommand get" -l generate -d 'Render a new meme image (premium users only)'
complete -c memes -n "__fish_memes_using_subcommand get" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand get" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand topup" -l user -d 'The user whose balance changes' -r
complete -c memes -n "__fish_memes_using_subcommand topup" -l amount -d 'Tokens to add; a negative amount deducts (never below zero)' -r
complete -c memes -n "__fish_memes_using_subcommand topup" -l reason -d 'Free text kept with the ledger entry, e.g. a payment provider\'s event id' -r
complete -c memes -n "__fish_memes_using_subcommand topup" -l idempotency-key -d 'Makes retries safe: the same key with the same top-up credits once' -r
complete -c memes -n "__fish_memes_using_subcommand topup" -l expires-at -d 'When the tokens added expire (RFC 3339, e.g. 2027-01-31T00:00:00Z)' -r
complete -c memes -n "__fish_memes_using_subcommand topup" -l expires-in -d 'How long after now the tokens added expire (e.g. 30d, 12h)' -r
complete -c memes -n "__fish_memes_using_subcommand topup" -l priority -d '0-100, default 50: lots of a lower priority are spent first' -r
complete -c memes -n "__fish_memes_using_subcommand topup" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand topup" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand topup" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand topup" -l promo -d 'The tokens added are promotional (given, not paid for): spent before paid ones'
complete -c memes -n "__fish_memes_using_subcommand topup" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand topup" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand balance" -l user -d 'The user whose balance and tier to show' -r
complete -c memes -n "__fish_memes_using_subcommand balance" -l at -d 'The balance as it was at this instant (RFC 3339, e.g. 2027-01-31T00:00:00Z), with the lots spendable then; after now, what expiry alone would leave by then' -r
complete -c memes -n "__fish_memes_using_subcommand balance" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand balance" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand balance" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand balance" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand balance" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand lots" -l user -d 'The user whose lots to list' -r
complete -c memes -n "__fish_memes_using_subcommand lots" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand lots" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand lots" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand lots" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand lots" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand hold" -l user -d 'The user whose tokens are set aside' -r
complete -c memes -n "__fish_memes_using_subcommand hold" -l amount -d 'Tokens to set aside (taken from the lots in the order they are spent)' -r
complete -c memes -n "__fish_memes_using_subcommand hold" -l ttl -d 'How long the hold lasts (e.g. 5m, 30s; at most 7d); then its tokens go back' -r
complete -c memes -n "__fish_memes_using_subcommand hold" -l idempotency-key -d 'Makes retries safe: the same key with the same hold holds once' -r
complete -c memes -n "__fish_memes_using_subcommand hold" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand hold" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand hold" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand hold" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand hold" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand capture" -l amount -d 'Tokens to spend (at most what it holds; the rest goes back); default: all' -r
complete -c memes -n "__fish_memes_using_subcommand capture" -l user -d 'Refuse unless the hold is this user\'s' -r
complete -c memes -n "__fish_memes_using_subcommand capture" -l idempotency-key -d 'Makes retries safe: the same key with the same capture captures once' -r
complete -c memes -n "__fish_memes_using_subcommand capture" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand capture" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand capture" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand capture" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand capture" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand void" -l user -d 'Refuse unless the hold is this user\'s' -r
complete -c memes -n "__fish_memes_using_subcommand void" -l idempotency-key -d 'Makes retries safe: the same key with the same void voids once' -r
complete -c memes -n "__fish_memes_using_subcommand void" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand void" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand void" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand void" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand void" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand refund" -l entry -d 'The charge\'s (or a hold\'s capture\'s) entry, its seq as `memes history` shows it' -r
complete -c memes -n "__fish_memes_using_subcommand refund" -l amount -d 'Tokens to give back (at most what is left of the charge); default: all that is left' -r
complete -c memes -n "__fish_memes_using_subcommand refund" -l user -d 'Refuse unless the entry is this user\'s' -r
complete -c memes -n "__fish_memes_using_subcommand refund" -l idempotency-key -l key -d 'Makes retries safe: the same key with the same refund refunds once' -r
complete -c memes -n "__fish_memes_using_subcommand refund" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand refund" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand refund" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand refund" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand refund" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand history" -l user -d 'The user whose ledger entries to show' -r
complete -c memes -n "__fish_memes_using_subcommand history" -l limit -d 'Only the newest N entries (still oldest first; 1 or more)' -r
complete -c memes -n "__fish_memes_using_subcommand history" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand history" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand history" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand history" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand history" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand search" -l limit -d 'At most this many results (1-100)' -r
complete -c memes -n "__fish_memes_using_subcommand search" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand search" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand search" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand search" -l nsfw -d 'Include memes flagged not safe for work'
complete -c memes -n "__fish_memes_using_subcommand search" -l explain -d 'Also show what each score is made of: the words\' BM25F score and the closeness in meaning (cosine)'
complete -c memes -n "__fish_memes_using_subcommand search" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand search" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand similar" -l limit -d 'At most this many results (1-100)' -r
complete -c memes -n "__fish_memes_using_subcommand similar" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand similar" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand similar" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand similar" -l nsfw -d 'Include memes flagged not safe for work'
complete -c memes -n "__fish_memes_using_subcommand similar" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand similar" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand entitle" -l user -d 'The user whose tier to set' -r
complete -c memes -n "__fish_memes_using_subcommand entitle" -l tier -d 'The tier from now on' -r -f -a "free\t'Memes from the catalogue'
premium\t'Also generated meme images (`memes get --generate`)'"
complete -c memes -n "__fish_memes_using_subcommand entitle" -l until -d 'When the entitlement ends, RFC 3339 (e.g. 2027-01-31T00:00:00Z); open-ended if absent' -r
complete -c memes -n "__fish_memes_using_subcommand entitle" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand entitle" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand entitle" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand entitle" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand entitle" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memes -n "__fish_memes_using_subcommand audit" -l export -d 'Check this export (`memesd export`) instead, offline: its chain of line hashes and every sum; no daemon needed' -r -F
complete -c memes -n "__fish_memes_using_subcommand audit" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand audit" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand audit" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand audit" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand audit" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand reload" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand reload" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand reload" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand reload" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand reload" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand status" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand status" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand status" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand status" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand status" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand stop" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand stop" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand stop" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand stop" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand stop" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand bench" -s c -l conns -d 'Connections' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -s d -l depth -d 'Requests in flight per connection (closed loop)' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -s n -l requests -d 'Total requests to send' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l duration -d 'Send for this long instead of a number of requests: seconds (`10`) or with a unit (`500ms`, `1m`)' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l rate -d 'Open loop: this many requests per second in total, latency from the schedule' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l op -d 'What to send' -r -f -a "get\t'Charged `get` (durable)'
topup\t'`topup` by 1 (durable; admins)'
balance\t'`balance` (read)'
mixed\t'70% get, 25% balance, 5% topup'"
complete -c memes -n "__fish_memes_using_subcommand bench" -l users -d 'Distinct users to spread the requests over' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l user-prefix -d 'Bench user ids are this prefix plus a number' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l query -d 'Query of `get` requests' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l template -d 'Send this line instead (`{id}`, `{user}` and `{seq}`, the request\'s number on its connection, are filled in), e.g. for another daemon' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l max-p99 -d 'Exit 1 if the p99 latency is above this many milliseconds' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l max-latency -d 'Exit 1 if the maximum latency is above this many milliseconds' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l min-rps -d 'Exit 1 if throughput (successful requests per second) is below this' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l max-errors -d 'Exit 1 if more than this many requests get an error reply (none are allowed by default)' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l threads -d 'Client threads (1 keeps the generator\'s own footprint small)' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l http -d 'Over HTTP instead: charged `GET /memes` on this server (`http://host:port`), a rotating bearer per request' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l bearers -d 'With --http: the bearers to rotate over, one per line (signed tokens, say), instead of the bench user ids' -r -F
complete -c memes -n "__fish_memes_using_subcommand bench" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand bench" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand bench" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand bench" -l prepare -d 'First top up every bench user by a large amount (pipelined), then measure. Opens permanent accounts: refused on a ledger that already holds any, unless --force'
complete -c memes -n "__fish_memes_using_subcommand bench" -l force -d 'Prepare, or send changes, even into a ledger that holds accounts other than the bench users\''
complete -c memes -n "__fish_memes_using_subcommand bench" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memes -n "__fish_memes_using_subcommand completions" -l socket -r -F
complete -c memes -n "__fish_memes_using_subcommand completions" -l url -r
complete -c memes -n "__fish_memes_using_subcommand completions" -l color -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand completions" -l json
complete -c memes -n "__fish_memes_using_subcommand completions" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand admin-key; and not __fish_seen_subcommand_from new help" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand admin-key; and not __fish_seen_subcommand_from new help" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand admin-key; and not __fish_seen_subcommand_from new help" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand admin-key; and not __fish_seen_subcommand_from new help" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand admin-key; and not __fish_seen_subcommand_from new help" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand admin-key; and not __fish_seen_subcommand_from new help" -f -a "new" -d 'Make a new admin key: print the key (for whoever acts as admin) and the line to add to memesd\'s --admin-keys file'
complete -c memes -n "__fish_memes_using_subcommand admin-key; and not __fish_seen_subcommand_from new help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memes -n "__fish_memes_using_subcommand admin-key; and __fish_seen_subcommand_from new" -l socket -d 'memesd\'s socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]' -r -F
complete -c memes -n "__fish_memes_using_subcommand admin-key; and __fish_seen_subcommand_from new" -l url -d 'Talk to memesd\'s HTTP API at this URL instead of a socket (http://host:port), with the bearer credential in MEMES_TOKEN (a user\'s token or an admin key; without it, the request\'s user id, as a development-mode memesd takes it)' -r
complete -c memes -n "__fish_memes_using_subcommand admin-key; and __fish_seen_subcommand_from new" -l color -d 'When to colour the error and warning labels on stderr (auto: when stderr is a terminal and NO_COLOR is not set)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c memes -n "__fish_memes_using_subcommand admin-key; and __fish_seen_subcommand_from new" -l json -d 'Print the reply\'s data (or the error) as one JSON document on stdout, for scripts'
complete -c memes -n "__fish_memes_using_subcommand admin-key; and __fish_seen_subcommand_from new" -s h -l help -d 'Print help'
complete -c memes -n "__fish_memes_using_subcommand admin-key; and __fish_seen_subcommand_from help" -f -a "new" -d 'Make a new admin key: print the key (for whoever acts as admin) and the line to add to memesd\'s --admin-keys file'
complete -c memes -n "__fish_memes_using_subcommand admin-key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "get" -d 'Get a meme (charged only when delivered)'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "topup" -d 'Add tokens to a balance, or deduct them with a negative amount (admins)'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "balance" -d 'Show a balance and tier'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "lots" -d 'List the lots a balance is made of, in the order they are spent'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "hold" -d 'Set tokens of a balance aside until captured, voided or expired (admins)'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "capture" -d 'End a hold by spending (part of) it; the rest goes back (admins)'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "void" -d 'End a hold by giving all of it back (admins)'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "refund" -d 'Give back (part of) a charge, to the lots it came from (admins)'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "history" -d 'Show a user\'s ledger entries, oldest first'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "search" -d 'Browse ranked matches for a query, by its words and its meaning, free of charge'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "similar" -d 'List the memes nearest in meaning to one meme, free of charge'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "entitle" -d 'Set a user\'s tier (admins)'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "audit" -d 'Replay the whole ledger and check every invariant (admins), or an export offline (--export FILE); exit 1 on a discrepancy'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "reload" -d 'Reload the meme catalogue and the admin keys from their files (admins; same as SIGHUP)'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "status" -d 'Show the daemon\'s version, uptime and counts'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "stop" -d 'Stop the memesd on this socket (and no other), and wait until it has finished'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "bench" -d 'Measure memesd: throughput and latency percentiles under load'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "completions" -d 'Print a shell completion script'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "admin-key" -d 'Make admin keys for memesd\'s HTTP API (local; no daemon needed)'
complete -c memes -n "__fish_memes_using_subcommand help; and not __fish_seen_subcommand_from get topup balance lots hold capture void refund history search similar entitle audit reload status stop bench completions admin-key help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memes -n "__fish_memes_using_subcommand help; and __fish_seen_subcommand_from admin-key" -f -a "new" -d 'Make a new admin key: print the key (for whoever acts as admin) and the line to add to memesd\'s --admin-keys file'
