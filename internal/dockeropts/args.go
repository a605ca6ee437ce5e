package dockeropts

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// Usage is the command's help text.
const Usage = `Usage: weft docker-opts [-f SUBNET-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY]

Write Docker daemon options derived from weft's (flannel's) subnet.env, as
flannel's mk-docker-opts.sh does.

  -f FILE  subnet file to read (default $FLANNELD_SUBNET_FILE, else /run/flannel/subnet.env)
  -d FILE  file to write (default /run/docker_opts.env)
  -i       write each option as its own variable (DOCKER_OPT_BIP, DOCKER_OPT_IPMASQ, DOCKER_OPT_MTU;
           with FLANNEL_IPV6_SUBNET also DOCKER_OPT_IPV6 and DOCKER_OPT_FIXED_CIDR_V6)
  -c       write all options combined into one variable (DOCKER_OPTS)
  -k KEY   name of the combined variable (default DOCKER_OPTS)
  -m       leave out --ip-masq (for old Docker versions)

Without -i or -c both are written. Exits 1, after writing the file, when the
main routing table has a route via a gateway for this host's own subnet.
`

// ParseArgs reads the script's options with getopts rules: flags may be
// bundled (-ic), an option's value may be attached (-k KEY or -kKEY), and
// "--" ends the options. Unlike the script, arguments left after the options
// are an error rather than ignored. -h, -help and --help return
// flag.ErrHelp.
//
// Also unlike the script, -f defaults to $FLANNELD_SUBNET_FILE when that is
// set (getenv may be nil), so that in a unit whose EnvironmentFile= moves
// the agent's subnet file, ExecStartPost=weft docker-opts reads that file.
func ParseArgs(args []string, getenv func(string) string) (Options, error) {
	o := Defaults()
	if getenv != nil {
		if f := getenv("FLANNELD_SUBNET_FILE"); f != "" {
			o.SubnetFile = f
		}
	}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if a == "-help" || a == "--help" {
			return o, flag.ErrHelp
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		if a[1] == '-' {
			// getopts has no long options; name the whole word.
			return o, fmt.Errorf("unknown option %s", a)
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			switch c {
			case 'i':
				o.Individual = true
			case 'c':
				o.Combined = true
			case 'm':
				o.OmitIPMasq = true
			case 'h':
				return o, flag.ErrHelp
			case 'f', 'd', 'k':
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return o, fmt.Errorf("option -%c needs a value", c)
					}
					i++
					val = args[i]
				}
				switch c {
				case 'f':
					o.SubnetFile = val
				case 'd':
					o.OutputFile = val
				case 'k':
					o.CombinedKey = val
				}
				j = len(a)
			default:
				return o, fmt.Errorf("unknown option -%c", c)
			}
		}
	}
	if i < len(args) {
		return o, fmt.Errorf("unexpected arguments %q", strings.Join(args[i:], " "))
	}
	if o.SubnetFile == "" || o.OutputFile == "" {
		return o, errors.New("-f and -d need a non-empty file name")
	}
	if !IsShellName(o.CombinedKey) {
		return o, fmt.Errorf("-k %q: not a shell variable name", o.CombinedKey)
	}
	return o, nil
}
