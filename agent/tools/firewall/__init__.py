"""The destructive-action firewall: screen.py screens each shell command; verbs.py says what one
simple command would destroy, paths.py whether that place is protected, git_probe.py which git
commands would throw away work, words.py how arguments look after expansion."""
