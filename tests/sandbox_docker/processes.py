"""Shell snippets the Docker tests share."""

# Exit 0 while the process exists and is not a zombie (an orphan may wait a while to be reaped).
ALIVE = "state=$(sed 's/.*) //' /proc/$(cat {pid_file})/stat 2>/dev/null | cut -d' ' -f1); [ -n \"$state\" ] && [ \"$state\" != Z ]"
