# tests/lib/readme.sh: reading the README from the tests that run what it says
# (tests/integration/t_readme.sh, tests/compose/run.sh). Source it with
# README set to the README's path.
#
#   readme_section <heading>     the lines under <heading> (the exact heading
#                                line), up to the next heading of the same or a
#                                higher level; lines in code blocks are never
#                                headings (a shell comment starts with '#' too)
#   readme_code <heading> <lang> the contents of the section's ```<lang> blocks

readme_section() {
    awk -v heading="$1" '
        /^```/ { fence = !fence }
        !fence && /^#+ / {
            match($0, /^#+/)
            if (in_section && RLENGTH <= level) in_section = 0
            if ($0 == heading) { in_section = 1; level = RLENGTH; next }
        }
        in_section
    ' "${README:?readme.sh: set README to the path of README.md}"
}

readme_code() {
    readme_section "$1" | awk -v lang="$2" '
        /^```/ {
            if (!fence) { fence = 1; take = substr($0, 4) == lang } else fence = 0
            next
        }
        fence && take
    '
}
