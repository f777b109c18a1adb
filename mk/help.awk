# `make help`: each `target: ## text` line of the makefiles, under the `##@ group` heading above
# it in its file; groups in the order of -v groups="...", any other after them. Plain text, no
# colour codes, so it reads the same in a pipe.
BEGIN { FS = ":.*## "; n = split(groups, order, " ") }
FNR == 1 { group = "" }
/^##@ / { group = substr($0, 5); if (!(group in lines)) seen[++m] = group; next }
/^[a-zA-Z0-9_-]+:.*## / { lines[group] = lines[group] sprintf("  %-22s %s\n", $1, $2) }
END {
    print "usage: make TARGET [VAR=value ...]"
    if ("" in lines) printf "\n%s", lines[""]
    for (i = 1; i <= n; i++) show(order[i])
    for (i = 1; i <= m; i++) show(seen[i])
}
function show(g) { if (g in lines && !(g in shown)) { printf "\n%s:\n%s", g, lines[g]; shown[g] = 1 } }
