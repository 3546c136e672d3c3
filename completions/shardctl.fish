# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_shardctl_global_optspecs
    string join \n config= defaults-file= defaults-extra-file= no-defaults format= q/quiet v/verbose h/help V/version
end

function __fish_shardctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_shardctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_shardctl_using_subcommand
    set -l cmd (__fish_shardctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c shardctl -n "__fish_shardctl_needs_command" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_needs_command" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_needs_command" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_needs_command" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_needs_command" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_needs_command" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_needs_command" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c shardctl -n "__fish_shardctl_needs_command" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "init" -d 'Create or upgrade the global ring schema (idempotent)'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "doctor" -d 'Check every server: reachable, privileges, schema version, replication'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "shard" -d 'Register shards and change their weight and state'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "user" -d 'Place new users on shards and find where users live'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "id" -d 'Globally unique IDs from the ticket servers'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "migrate" -d 'Move a user\'s rows to another shard: journaled, verified, fenced, resumable'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "rebalance" -d 'Plan and apply moves of users so every shard carries its weight\'s share'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "lock" -d 'Account and job locks: acquire, inspect, release, sweep, run under a lock'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "maintenance" -d 'Drain half of every shard for maintenance, and bring it back'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "top" -d 'The federation live in one screen: shards, servers, migrations, locks, audit'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "audit" -d 'Who did what, from the audit log'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "sandbox" -d 'A local federation of MariaDB servers for trying shardctl'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "cache" -d 'The application\'s routing cache (memcached): what shardctl deletes, and by hand'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "guard" -d 'The write guard: triggers on every shard server that refuse writes to moving users\' rows'
complete -c shardctl -n "__fish_shardctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand init" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand init" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand init" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand init" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand init" -l dry-run -d 'Say what would be created or upgraded, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand init" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand init" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand init" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand init" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand init" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand doctor" -l max-lag -d 'Replication lag above this many seconds is a problem' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand doctor" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand doctor" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand doctor" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand doctor" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand doctor" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand doctor" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand doctor" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -f -a "add" -d 'Register a shard and its servers (halves a, b, a, ... in order)'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -f -a "list" -d 'Weight, state, users, share against target share, and servers of every shard'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -f -a "set-weight" -d 'Change a shard\'s weight'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -f -a "set-state" -d 'Change a shard\'s state (only active shards take new users)'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -f -a "remove" -d 'Remove a shard that holds no users'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -f -a "set-capacity" -d 'Set the queries per second a shard\'s servers can carry (checked before a drain)'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and not __fish_seen_subcommand_from add list set-weight set-state remove set-capacity help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -l weight -d 'How much of the user base this shard\'s hardware should carry (> 0)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -l server -d 'A server of the shard, HOST:PORT; repeat for each server' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -l no-check -d 'Do not check that the servers answer and hold the shard database'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -l dry-run -d 'Show what would be registered, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from list" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from list" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from list" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from list" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from list" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-weight" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-weight" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-weight" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-weight" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-weight" -l dry-run -d 'Show the change, make none'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-weight" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-weight" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-weight" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-weight" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-weight" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-state" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-state" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-state" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-state" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-state" -l dry-run -d 'Show the change, make none'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-state" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-state" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-state" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-state" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-state" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from remove" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from remove" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from remove" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from remove" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from remove" -l dry-run -d 'Check that the shard could be removed, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from remove" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from remove" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -l server -d 'Only this server of the shard [default: every server]; repeat for several' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -l dry-run -d 'Show the change, make none'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from set-capacity" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from help" -f -a "add" -d 'Register a shard and its servers (halves a, b, a, ... in order)'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from help" -f -a "list" -d 'Weight, state, users, share against target share, and servers of every shard'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from help" -f -a "set-weight" -d 'Change a shard\'s weight'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from help" -f -a "set-state" -d 'Change a shard\'s state (only active shards take new users)'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a shard that holds no users'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from help" -f -a "set-capacity" -d 'Set the queries per second a shard\'s servers can carry (checked before a drain)'
complete -c shardctl -n "__fish_shardctl_using_subcommand shard; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -f -a "assign" -d 'Place new users on active shards at random, in proportion to weight'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -f -a "locate" -d 'The user\'s shard, state, servers, and the server to use now'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and not __fish_seen_subcommand_from assign locate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -l file -d 'Read user ids from a file, one per line (`-` for stdin)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -l seed -d 'Seed the random choice, for a reproducible placement' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -l dry-run -d 'Show how many users would be placed, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from assign" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from locate" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from locate" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from locate" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from locate" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from locate" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from locate" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from locate" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from locate" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from locate" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "assign" -d 'Place new users on active shards at random, in proportion to weight'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "locate" -d 'The user\'s shard, state, servers, and the server to use now'
complete -c shardctl -n "__fish_shardctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -f -a "next" -d 'Take new IDs from the ticket servers'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and not __fish_seen_subcommand_from next help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -l bits -d '32- or 64-bit IDs' -r -f -a "32\t''
64\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -s n -d 'How many IDs' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from next" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from help" -f -a "next" -d 'Take new IDs from the ticket servers'
complete -c shardctl -n "__fish_shardctl_using_subcommand id; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l to -d 'The shard to move the user to' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l cleanup -d 'When the source\'s rows are deleted: right after the flip, or (later) by `migrate resume`, so the move\'s time until served never includes the delete' -r -f -a "now\t''
later\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l mode -d 'online: writable while copying, read-only only for the last catch-up, the verification and the flip (refused with exit 4 where the source\'s binary log cannot be followed); offline: read-only from before the copy; auto: online for accounts of at least `[migrate] online_min_rows` rows where the source allows it' -r -f -a "auto\t'Online where the source allows it and the account is large enough, else offline'
online\t'Writable while copying; refused where the source\'s binary log cannot be followed'
offline\t'Read-only from before the copy until the flip'"
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l lock-ttl -d 'The account lock\'s lease, renewed every third of it while working' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l max-lag -d 'Wait while a peer of the source or destination lags more than this many seconds' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l keep-source -d 'Leave the user\'s rows on the source (`migrate resume` deletes them later)'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l clear-destination -d 'Delete rows of the user already on the destination before copying. Without it such rows (which no migration explains) make the move refuse with exit 4'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l dry-run -d 'Show what would be moved, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -a "resume" -d 'Finish (past the flip) or roll back (before it) interrupted migrations'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -a "status" -d 'The migration journal'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and not __fish_seen_subcommand_from resume status help" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -l lock-ttl -d 'The account lock\'s lease, renewed every third of it while working' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -l max-lag -d 'The clean-up after a flip (`--cleanup later`) waits while a peer of the source lags more than this many seconds; a roll-back never waits' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -l all -d 'Every unfinished migration'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from resume" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from status" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from status" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from status" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from status" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from status" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Finish (past the flip) or roll back (before it) interrupted migrations'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "status" -d 'The migration journal'
complete -c shardctl -n "__fish_shardctl_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -f -a "plan" -d 'The fewest moves that bring every shard within the tolerance of its target'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -f -a "apply" -d 'Apply a plan (or plan now and apply): parallel, resumable, safe to run twice'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and not __fish_seen_subcommand_from plan apply help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -l tolerance -d 'A shard is balanced within this many percent of its target' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -l by -d 'Balance the count of users, or their rows' -r -f -a "users\t''
rows\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -l max-moves -d 'Plan at most N moves (the most pressing first)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -s o -l output -d 'Write the plan to this file (JSON), for `rebalance apply`' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from plan" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l jobs -d 'Workers moving accounts in parallel' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l per-shard -d 'At most N moves touching any one shard at a time' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l max-lag -d 'Wait while a server of a shard being moved lags more than this many seconds' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l lock-ttl -d 'The account lock\'s lease, renewed every third of it while working' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l mode -d 'How accounts too large for a batch move: online (writable while copying), offline, or auto (online where the source allows it and the account has at least `[migrate] online_min_rows` rows)' -r -f -a "auto\t'Online where the source allows it and the account is large enough, else offline'
online\t'Writable while copying; refused where the source\'s binary log cannot be followed'
offline\t'Read-only from before the copy until the flip'"
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l tolerance -d 'A shard is balanced within this many percent of its target' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l by -d 'Balance the count of users, or their rows' -r -f -a "users\t''
rows\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l max-moves -d 'Plan at most N moves (the most pressing first)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l dry-run -d 'Say what would move, move nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from apply" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from help" -f -a "plan" -d 'The fewest moves that bring every shard within the tolerance of its target'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from help" -f -a "apply" -d 'Apply a plan (or plan now and apply): parallel, resumable, safe to run twice'
complete -c shardctl -n "__fish_shardctl_using_subcommand rebalance; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -f -a "acquire" -d 'Take a lock and print its fencing token'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -f -a "release" -d 'Release a lock (only the current holder\'s, with --token)'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -f -a "show" -d 'A lock\'s lease and its GET_LOCK holder'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -f -a "list" -d 'Every lease: holder, age, time left, GET_LOCK session'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -f -a "run" -d 'Hold (and renew) a lock while a command runs'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -f -a "force-release" -d 'End whoever holds a lock: kill its GET_LOCK session, delete its lease'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -f -a "sweep" -d 'Release every expired lock (for cron: prints nothing on success without -v)'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and not __fish_seen_subcommand_from acquire release show list run force-release sweep help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -l ttl -d 'How long the lease lasts unless renewed (30s, 10m)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -l owner -d 'Who holds it [default: the operator]' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -l wait -d 'Keep trying this long while the lock is in use' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -l purpose -d 'Why it is held, recorded in the lease' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -l dry-run -d 'Say whether the lock could be taken now (exit 3 if not), take nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from acquire" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -l token -d 'Release only if the lock still carries this token' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -l dry-run -d 'Say what would be released, release nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from release" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from show" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from show" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from show" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from show" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from show" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -l prefix -d 'Only names starting with P' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -l owner -d 'Only leases held by O' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -l expired -d 'Only expired leases'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l ttl -d 'How long the lease lasts unless renewed (30s, 10m)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l owner -d 'Who holds it [default: the operator]' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l wait -d 'Keep trying this long while the lock is in use' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l purpose -d 'Why it is held, recorded in the lease' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l grace -d 'After SIGTERM, how long the command has before SIGKILL when the lock is lost' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l dry-run -d 'Say whether the lock could be taken now (exit 3 if not), take nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -l reason -d 'Why, for the audit log' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -l dry-run -d 'Show the lease and the session that would be killed, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from force-release" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -l limit -d 'Release at most N locks (at least 1) [default: all]' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -l dry-run -d 'List what would be released, release nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from sweep" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "acquire" -d 'Take a lock and print its fencing token'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "release" -d 'Release a lock (only the current holder\'s, with --token)'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "show" -d 'A lock\'s lease and its GET_LOCK holder'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every lease: holder, age, time left, GET_LOCK session'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "run" -d 'Hold (and renew) a lock while a command runs'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "force-release" -d 'End whoever holds a lock: kill its GET_LOCK session, delete its lease'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "sweep" -d 'Release every expired lock (for cron: prints nothing on success without -v)'
complete -c shardctl -n "__fish_shardctl_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -f -a "status" -d 'Every shard server: half, status, reachable, replication and lag, application sessions'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -f -a "drain" -d 'Take half of every shard out of service: check, mark draining, wait, mark offline'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -f -a "restore" -d 'Bring a drained half back online once each server has caught up'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -f -a "roll" -d 'Drain each half in turn, run a command for each drained server, restore; then the next'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and not __fish_seen_subcommand_from status drain restore roll help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from status" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from status" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from status" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from status" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from status" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -l half -d 'The half to drain' -r -f -a "a\t''
b\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -l timeout -d 'How long to wait for application sessions to end before giving up (servers left draining)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -l max-lag -d 'Refuse when replication between the halves lags more than this many seconds' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -l dry-run -d 'Check and show what would be drained, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -l skip-unsafe -d 'Drain the shards that pass the checks and list the rest (exit 5), instead of refusing all'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from drain" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -l half -d 'The half to bring back' -r -f -a "a\t''
b\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -l max-lag -d 'A server goes online only once its replication lags at most this many seconds' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -l timeout -d 'How long to wait for servers to answer and catch up (the rest stay offline)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -l dry-run -d 'Show which servers are ready to come back now, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from restore" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l exec -d 'The command run (through `sh -c`) once for each drained server, with SHARDCTL_SHARD, SHARDCTL_HALF, SHARDCTL_HOST and SHARDCTL_PORT set' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l halves -d 'The halves, in order' -r -f -a "a\t''
b\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l parallel -d 'How many commands run at once' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l timeout -d 'How long each drain waits for sessions, and each restore for servers to catch up' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l exec-timeout -d 'A command still running after this long is stopped (SIGTERM, SIGKILL 5s later) and counts as failed; raise it for long upgrades' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l max-lag -d 'Refuse to drain, and wait to restore, while replication lags more than this many seconds' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l dry-run -d 'Check the first half\'s drain and show what would run, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from roll" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from help" -f -a "status" -d 'Every shard server: half, status, reachable, replication and lag, application sessions'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from help" -f -a "drain" -d 'Take half of every shard out of service: check, mark draining, wait, mark offline'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from help" -f -a "restore" -d 'Bring a drained half back online once each server has caught up'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from help" -f -a "roll" -d 'Drain each half in turn, run a command for each drained server, restore; then the next'
complete -c shardctl -n "__fish_shardctl_using_subcommand maintenance; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -l interval -d 'How often the screen refreshes (at least 100ms)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -l once -d 'Print one snapshot (tables, or one JSON document) and exit; no terminal needed'
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand top" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -l since -d 'Only entries newer than this (30m, 2h, 7d)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -l action -d 'Only this action (for example shard.add, user.assign)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -l limit -d 'At most this many entries, newest first' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand audit" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -f -a "up" -d 'Start (or restart what is down of) a local federation'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -f -a "status" -d 'The sandbox\'s servers and whether they run'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -f -a "down" -d 'Stop the sandbox\'s servers (by pid; idempotent)'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and not __fish_seen_subcommand_from up status down help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l dir -d 'The sandbox directory' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l shards -d 'Number of shards, two servers each' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l spare-shards -d 'More shards whose servers run with the schema but are not registered: hardware to add with `shard add`' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l users -d 'Users to create, placed by weight, with skewed account sizes' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l base-port -d 'First port: the ring server; shards take the ports after it' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l buffer-pool-mb -d 'InnoDB buffer pool of each server, in MB' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l lock-backend -d 'Where lock records live: the ring\'s `locks` table, or a ZooKeeper ensemble started beside the servers (`[locks] backend = "zookeeper"`)' -r -f -a "mysql\t''
zookeeper\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l zookeeper-nodes -d 'Nodes of the ZooKeeper ensemble (with --lock-backend zookeeper; default 3)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l cache -d 'Also run a memcached (the application\'s routing cache) on the port after the shards\', and write its `[cache]` section'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l write-guard -d 'Turn the write guard on (`[shards] write_guard = true`) and install it on every server'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l dir -d 'The sandbox directory' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l dir -d 'The sandbox directory' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "up" -d 'Start (or restart what is down of) a local federation'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "status" -d 'The sandbox\'s servers and whether they run'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "down" -d 'Stop the sandbox\'s servers (by pid; idempotent)'
complete -c shardctl -n "__fish_shardctl_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand completions" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand completions" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand completions" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand completions" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand completions" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand completions" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand completions" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -f -a "status" -d 'The cache servers and the deletes still pending'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -f -a "invalidate" -d 'Delete users\' cached entries on every cache server (and again after redelete_after)'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -f -a "flush" -d 'Retry the deletes that failed earlier'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -f -a "redelete" -d '(internal) The second delete of a run\'s keys, read from stdin, after a delay'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and not __fish_seen_subcommand_from status invalidate flush redelete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from status" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from status" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from status" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from status" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from status" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from invalidate" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from invalidate" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from invalidate" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from invalidate" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from invalidate" -l dry-run -d 'Name the keys, delete nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from invalidate" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from invalidate" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from invalidate" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from invalidate" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from invalidate" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from flush" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from flush" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from flush" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from flush" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from flush" -l dry-run -d 'Name the pending keys, delete nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from flush" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from flush" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from flush" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from flush" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from flush" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from redelete" -l after-ms -r
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from redelete" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from redelete" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from redelete" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from redelete" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from redelete" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from redelete" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from redelete" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from redelete" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from redelete" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "status" -d 'The cache servers and the deletes still pending'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "invalidate" -d 'Delete users\' cached entries on every cache server (and again after redelete_after)'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "flush" -d 'Retry the deletes that failed earlier'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "redelete" -d '(internal) The second delete of a run\'s keys, read from stdin, after a delay'
complete -c shardctl -n "__fish_shardctl_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -f -a "install" -d 'Install the guard table and triggers on every server of every shard (idempotent)'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -f -a "status" -d 'What every server has installed, and how many users it guards now'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -f -a "remove" -d 'Remove the triggers and the guard table from every server (refused while migrations are in flight or users are guarded, unless --force)'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -f -a "prune" -d 'Lift old guard rows: users moved away longer ago than --older-than are accepted again by the servers they left (a stale route may then write there)'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and not __fish_seen_subcommand_from install status remove prune help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -l timeout -d 'How long to wait for each table\'s metadata lock (CREATE and DROP TRIGGER take one)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -l dry-run -d 'Print the statements, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from install" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from status" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from status" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from status" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from status" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from status" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -l timeout -d 'How long to wait for each table\'s metadata lock (CREATE and DROP TRIGGER take one)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -l dry-run -d 'Print the statements, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -l force -d 'Remove it even while migrations are in flight or users are guarded (audited)'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -l older-than -d 'Lift the guard of users guarded longer ago than this (rows from before shardctl recorded when count as older than any)' -r
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -l config -d 'Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -l defaults-file -d 'Read credentials from only this MySQL option file (for auth sections naming none)' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -l defaults-extra-file -d 'Read this MySQL option file after the global ones, before ~/.my.cnf' -r -F
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -l format -d 'Output format: a table for people, one JSON document for scripts' -r -f -a "table\t''
json\t''"
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -l dry-run -d 'List what would be lifted, change nothing'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -l no-defaults -d 'Read no MySQL option file'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -s q -l quiet -d 'Print nothing on stderr but warnings, errors and what commands shardctl runs print (`lock run`, `maintenance roll`): no status lines, no progress bars'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -s v -l verbose -d 'Print more detail on stderr'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from prune" -s V -l version -d 'Print version'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "install" -d 'Install the guard table and triggers on every server of every shard (idempotent)'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "status" -d 'What every server has installed, and how many users it guards now'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove the triggers and the guard table from every server (refused while migrations are in flight or users are guarded, unless --force)'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Lift old guard rows: users moved away longer ago than --older-than are accepted again by the servers they left (a stale route may then write there)'
complete -c shardctl -n "__fish_shardctl_using_subcommand guard; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "init" -d 'Create or upgrade the global ring schema (idempotent)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "doctor" -d 'Check every server: reachable, privileges, schema version, replication'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "shard" -d 'Register shards and change their weight and state'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "user" -d 'Place new users on shards and find where users live'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "id" -d 'Globally unique IDs from the ticket servers'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "migrate" -d 'Move a user\'s rows to another shard: journaled, verified, fenced, resumable'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "rebalance" -d 'Plan and apply moves of users so every shard carries its weight\'s share'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "lock" -d 'Account and job locks: acquire, inspect, release, sweep, run under a lock'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "maintenance" -d 'Drain half of every shard for maintenance, and bring it back'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "top" -d 'The federation live in one screen: shards, servers, migrations, locks, audit'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "audit" -d 'Who did what, from the audit log'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "sandbox" -d 'A local federation of MariaDB servers for trying shardctl'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "completions" -d 'Print shell completions'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "cache" -d 'The application\'s routing cache (memcached): what shardctl deletes, and by hand'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "guard" -d 'The write guard: triggers on every shard server that refuse writes to moving users\' rows'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and not __fish_seen_subcommand_from init doctor shard user id migrate rebalance lock maintenance top audit sandbox completions cache guard help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from shard" -f -a "add" -d 'Register a shard and its servers (halves a, b, a, ... in order)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from shard" -f -a "list" -d 'Weight, state, users, share against target share, and servers of every shard'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from shard" -f -a "set-weight" -d 'Change a shard\'s weight'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from shard" -f -a "set-state" -d 'Change a shard\'s state (only active shards take new users)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from shard" -f -a "remove" -d 'Remove a shard that holds no users'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from shard" -f -a "set-capacity" -d 'Set the queries per second a shard\'s servers can carry (checked before a drain)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "assign" -d 'Place new users on active shards at random, in proportion to weight'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "locate" -d 'The user\'s shard, state, servers, and the server to use now'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from id" -f -a "next" -d 'Take new IDs from the ticket servers'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "resume" -d 'Finish (past the flip) or roll back (before it) interrupted migrations'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "status" -d 'The migration journal'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from rebalance" -f -a "plan" -d 'The fewest moves that bring every shard within the tolerance of its target'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from rebalance" -f -a "apply" -d 'Apply a plan (or plan now and apply): parallel, resumable, safe to run twice'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from lock" -f -a "acquire" -d 'Take a lock and print its fencing token'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from lock" -f -a "release" -d 'Release a lock (only the current holder\'s, with --token)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from lock" -f -a "show" -d 'A lock\'s lease and its GET_LOCK holder'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from lock" -f -a "list" -d 'Every lease: holder, age, time left, GET_LOCK session'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from lock" -f -a "run" -d 'Hold (and renew) a lock while a command runs'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from lock" -f -a "force-release" -d 'End whoever holds a lock: kill its GET_LOCK session, delete its lease'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from lock" -f -a "sweep" -d 'Release every expired lock (for cron: prints nothing on success without -v)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from maintenance" -f -a "status" -d 'Every shard server: half, status, reachable, replication and lag, application sessions'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from maintenance" -f -a "drain" -d 'Take half of every shard out of service: check, mark draining, wait, mark offline'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from maintenance" -f -a "restore" -d 'Bring a drained half back online once each server has caught up'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from maintenance" -f -a "roll" -d 'Drain each half in turn, run a command for each drained server, restore; then the next'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "up" -d 'Start (or restart what is down of) a local federation'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "status" -d 'The sandbox\'s servers and whether they run'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "down" -d 'Stop the sandbox\'s servers (by pid; idempotent)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "status" -d 'The cache servers and the deletes still pending'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "invalidate" -d 'Delete users\' cached entries on every cache server (and again after redelete_after)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "flush" -d 'Retry the deletes that failed earlier'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "redelete" -d '(internal) The second delete of a run\'s keys, read from stdin, after a delay'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "install" -d 'Install the guard table and triggers on every server of every shard (idempotent)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "status" -d 'What every server has installed, and how many users it guards now'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "remove" -d 'Remove the triggers and the guard table from every server (refused while migrations are in flight or users are guarded, unless --force)'
complete -c shardctl -n "__fish_shardctl_using_subcommand help; and __fish_seen_subcommand_from guard" -f -a "prune" -d 'Lift old guard rows: users moved away longer ago than --older-than are accepted again by the servers they left (a stale route may then write there)'
