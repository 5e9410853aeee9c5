/*
 * The ISO 3166-1 alpha-2 table behind the `country-XX` username option and the
 * provider's `country_format` rendering.
 *
 * Country codes from clients are validated against this table (an unknown
 * code is a 400, never a silent fallback), and providers receive the country
 * in the format their url_template expects. The table is one X-macro list
 * expanded twice at compile time: a dense array in code order and a 26x26
 * index from the two letters to its row, so a lookup is two array reads and
 * there is no initialisation step or mutable state. A code listed twice is a
 * compile error (-Woverride-init, part of -Wextra, on the index initialiser).
 */
#include "country.h"

#include <string.h>

/*
 * Naming convention. The names are the ISO 3166-1 English short names, made
 * into the form in common use and kept plain ASCII, so every rendering is
 * ASCII and safe in any upstream username:
 *   - formal parts and parentheticals are dropped or turned around:
 *     "United States of America" -> "United States", "Korea (the Republic
 *     of)" -> "South Korea", "Iran (Islamic Republic of)" -> "Iran",
 *     "Virgin Islands (British)" -> "British Virgin Islands", "Cocos
 *     (Keeling) Islands" -> "Cocos Islands", "Holy See" -> "Vatican City";
 *   - the common short form is used where it differs from ISO's: Russia,
 *     Vietnam, Syria, Laos, Moldova, Taiwan, Bolivia, Tanzania, Venezuela,
 *     Brunei, Micronesia, Palestine, Turkey;
 *   - ISO's current short form is kept where it is also in common use:
 *     Czechia, Eswatini, North Macedonia, Cabo Verde, Macao, Timor-Leste;
 *   - diacritics are dropped: "Cote d'Ivoire", "Curacao", "Reunion",
 *     "Saint Barthelemy", "Aland Islands", "Sao Tome and Principe".
 * Names use only letters, spaces, and the punctuation ' - , (in Cote
 * d'Ivoire, Guinea-Bissau, Timor-Leste, Bonaire/Saint Helena's lists);
 * NO_SPACES keeps letters and digits only, so it drops all of them.
 */
#define COUNTRY_LIST(X)                                                                            \
    X(A, D, "Andorra")                                                                             \
    X(A, E, "United Arab Emirates")                                                                \
    X(A, F, "Afghanistan")                                                                         \
    X(A, G, "Antigua and Barbuda")                                                                 \
    X(A, I, "Anguilla")                                                                            \
    X(A, L, "Albania")                                                                             \
    X(A, M, "Armenia")                                                                             \
    X(A, O, "Angola")                                                                              \
    X(A, Q, "Antarctica")                                                                          \
    X(A, R, "Argentina")                                                                           \
    X(A, S, "American Samoa")                                                                      \
    X(A, T, "Austria")                                                                             \
    X(A, U, "Australia")                                                                           \
    X(A, W, "Aruba")                                                                               \
    X(A, X, "Aland Islands")                                                                       \
    X(A, Z, "Azerbaijan")                                                                          \
    X(B, A, "Bosnia and Herzegovina")                                                              \
    X(B, B, "Barbados")                                                                            \
    X(B, D, "Bangladesh")                                                                          \
    X(B, E, "Belgium")                                                                             \
    X(B, F, "Burkina Faso")                                                                        \
    X(B, G, "Bulgaria")                                                                            \
    X(B, H, "Bahrain")                                                                             \
    X(B, I, "Burundi")                                                                             \
    X(B, J, "Benin")                                                                               \
    X(B, L, "Saint Barthelemy")                                                                    \
    X(B, M, "Bermuda")                                                                             \
    X(B, N, "Brunei")                                                                              \
    X(B, O, "Bolivia")                                                                             \
    X(B, Q, "Bonaire, Sint Eustatius and Saba")                                                    \
    X(B, R, "Brazil")                                                                              \
    X(B, S, "Bahamas")                                                                             \
    X(B, T, "Bhutan")                                                                              \
    X(B, V, "Bouvet Island")                                                                       \
    X(B, W, "Botswana")                                                                            \
    X(B, Y, "Belarus")                                                                             \
    X(B, Z, "Belize")                                                                              \
    X(C, A, "Canada")                                                                              \
    X(C, C, "Cocos Islands")                                                                       \
    X(C, D, "Democratic Republic of the Congo")                                                    \
    X(C, F, "Central African Republic")                                                            \
    X(C, G, "Congo")                                                                               \
    X(C, H, "Switzerland")                                                                         \
    X(C, I, "Cote d'Ivoire")                                                                       \
    X(C, K, "Cook Islands")                                                                        \
    X(C, L, "Chile")                                                                               \
    X(C, M, "Cameroon")                                                                            \
    X(C, N, "China")                                                                               \
    X(C, O, "Colombia")                                                                            \
    X(C, R, "Costa Rica")                                                                          \
    X(C, U, "Cuba")                                                                                \
    X(C, V, "Cabo Verde")                                                                          \
    X(C, W, "Curacao")                                                                             \
    X(C, X, "Christmas Island")                                                                    \
    X(C, Y, "Cyprus")                                                                              \
    X(C, Z, "Czechia")                                                                             \
    X(D, E, "Germany")                                                                             \
    X(D, J, "Djibouti")                                                                            \
    X(D, K, "Denmark")                                                                             \
    X(D, M, "Dominica")                                                                            \
    X(D, O, "Dominican Republic")                                                                  \
    X(D, Z, "Algeria")                                                                             \
    X(E, C, "Ecuador")                                                                             \
    X(E, E, "Estonia")                                                                             \
    X(E, G, "Egypt")                                                                               \
    X(E, H, "Western Sahara")                                                                      \
    X(E, R, "Eritrea")                                                                             \
    X(E, S, "Spain")                                                                               \
    X(E, T, "Ethiopia")                                                                            \
    X(F, I, "Finland")                                                                             \
    X(F, J, "Fiji")                                                                                \
    X(F, K, "Falkland Islands")                                                                    \
    X(F, M, "Micronesia")                                                                          \
    X(F, O, "Faroe Islands")                                                                       \
    X(F, R, "France")                                                                              \
    X(G, A, "Gabon")                                                                               \
    X(G, B, "United Kingdom")                                                                      \
    X(G, D, "Grenada")                                                                             \
    X(G, E, "Georgia")                                                                             \
    X(G, F, "French Guiana")                                                                       \
    X(G, G, "Guernsey")                                                                            \
    X(G, H, "Ghana")                                                                               \
    X(G, I, "Gibraltar")                                                                           \
    X(G, L, "Greenland")                                                                           \
    X(G, M, "Gambia")                                                                              \
    X(G, N, "Guinea")                                                                              \
    X(G, P, "Guadeloupe")                                                                          \
    X(G, Q, "Equatorial Guinea")                                                                   \
    X(G, R, "Greece")                                                                              \
    X(G, S, "South Georgia and the South Sandwich Islands")                                        \
    X(G, T, "Guatemala")                                                                           \
    X(G, U, "Guam")                                                                                \
    X(G, W, "Guinea-Bissau")                                                                       \
    X(G, Y, "Guyana")                                                                              \
    X(H, K, "Hong Kong")                                                                           \
    X(H, M, "Heard Island and McDonald Islands")                                                   \
    X(H, N, "Honduras")                                                                            \
    X(H, R, "Croatia")                                                                             \
    X(H, T, "Haiti")                                                                               \
    X(H, U, "Hungary")                                                                             \
    X(I, D, "Indonesia")                                                                           \
    X(I, E, "Ireland")                                                                             \
    X(I, L, "Israel")                                                                              \
    X(I, M, "Isle of Man")                                                                         \
    X(I, N, "India")                                                                               \
    X(I, O, "British Indian Ocean Territory")                                                      \
    X(I, Q, "Iraq")                                                                                \
    X(I, R, "Iran")                                                                                \
    X(I, S, "Iceland")                                                                             \
    X(I, T, "Italy")                                                                               \
    X(J, E, "Jersey")                                                                              \
    X(J, M, "Jamaica")                                                                             \
    X(J, O, "Jordan")                                                                              \
    X(J, P, "Japan")                                                                               \
    X(K, E, "Kenya")                                                                               \
    X(K, G, "Kyrgyzstan")                                                                          \
    X(K, H, "Cambodia")                                                                            \
    X(K, I, "Kiribati")                                                                            \
    X(K, M, "Comoros")                                                                             \
    X(K, N, "Saint Kitts and Nevis")                                                               \
    X(K, P, "North Korea")                                                                         \
    X(K, R, "South Korea")                                                                         \
    X(K, W, "Kuwait")                                                                              \
    X(K, Y, "Cayman Islands")                                                                      \
    X(K, Z, "Kazakhstan")                                                                          \
    X(L, A, "Laos")                                                                                \
    X(L, B, "Lebanon")                                                                             \
    X(L, C, "Saint Lucia")                                                                         \
    X(L, I, "Liechtenstein")                                                                       \
    X(L, K, "Sri Lanka")                                                                           \
    X(L, R, "Liberia")                                                                             \
    X(L, S, "Lesotho")                                                                             \
    X(L, T, "Lithuania")                                                                           \
    X(L, U, "Luxembourg")                                                                          \
    X(L, V, "Latvia")                                                                              \
    X(L, Y, "Libya")                                                                               \
    X(M, A, "Morocco")                                                                             \
    X(M, C, "Monaco")                                                                              \
    X(M, D, "Moldova")                                                                             \
    X(M, E, "Montenegro")                                                                          \
    X(M, F, "Saint Martin")                                                                        \
    X(M, G, "Madagascar")                                                                          \
    X(M, H, "Marshall Islands")                                                                    \
    X(M, K, "North Macedonia")                                                                     \
    X(M, L, "Mali")                                                                                \
    X(M, M, "Myanmar")                                                                             \
    X(M, N, "Mongolia")                                                                            \
    X(M, O, "Macao")                                                                               \
    X(M, P, "Northern Mariana Islands")                                                            \
    X(M, Q, "Martinique")                                                                          \
    X(M, R, "Mauritania")                                                                          \
    X(M, S, "Montserrat")                                                                          \
    X(M, T, "Malta")                                                                               \
    X(M, U, "Mauritius")                                                                           \
    X(M, V, "Maldives")                                                                            \
    X(M, W, "Malawi")                                                                              \
    X(M, X, "Mexico")                                                                              \
    X(M, Y, "Malaysia")                                                                            \
    X(M, Z, "Mozambique")                                                                          \
    X(N, A, "Namibia")                                                                             \
    X(N, C, "New Caledonia")                                                                       \
    X(N, E, "Niger")                                                                               \
    X(N, F, "Norfolk Island")                                                                      \
    X(N, G, "Nigeria")                                                                             \
    X(N, I, "Nicaragua")                                                                           \
    X(N, L, "Netherlands")                                                                         \
    X(N, O, "Norway")                                                                              \
    X(N, P, "Nepal")                                                                               \
    X(N, R, "Nauru")                                                                               \
    X(N, U, "Niue")                                                                                \
    X(N, Z, "New Zealand")                                                                         \
    X(O, M, "Oman")                                                                                \
    X(P, A, "Panama")                                                                              \
    X(P, E, "Peru")                                                                                \
    X(P, F, "French Polynesia")                                                                    \
    X(P, G, "Papua New Guinea")                                                                    \
    X(P, H, "Philippines")                                                                         \
    X(P, K, "Pakistan")                                                                            \
    X(P, L, "Poland")                                                                              \
    X(P, M, "Saint Pierre and Miquelon")                                                           \
    X(P, N, "Pitcairn")                                                                            \
    X(P, R, "Puerto Rico")                                                                         \
    X(P, S, "Palestine")                                                                           \
    X(P, T, "Portugal")                                                                            \
    X(P, W, "Palau")                                                                               \
    X(P, Y, "Paraguay")                                                                            \
    X(Q, A, "Qatar")                                                                               \
    X(R, E, "Reunion")                                                                             \
    X(R, O, "Romania")                                                                             \
    X(R, S, "Serbia")                                                                              \
    X(R, U, "Russia")                                                                              \
    X(R, W, "Rwanda")                                                                              \
    X(S, A, "Saudi Arabia")                                                                        \
    X(S, B, "Solomon Islands")                                                                     \
    X(S, C, "Seychelles")                                                                          \
    X(S, D, "Sudan")                                                                               \
    X(S, E, "Sweden")                                                                              \
    X(S, G, "Singapore")                                                                           \
    X(S, H, "Saint Helena, Ascension and Tristan da Cunha")                                        \
    X(S, I, "Slovenia")                                                                            \
    X(S, J, "Svalbard and Jan Mayen")                                                              \
    X(S, K, "Slovakia")                                                                            \
    X(S, L, "Sierra Leone")                                                                        \
    X(S, M, "San Marino")                                                                          \
    X(S, N, "Senegal")                                                                             \
    X(S, O, "Somalia")                                                                             \
    X(S, R, "Suriname")                                                                            \
    X(S, S, "South Sudan")                                                                         \
    X(S, T, "Sao Tome and Principe")                                                               \
    X(S, V, "El Salvador")                                                                         \
    X(S, X, "Sint Maarten")                                                                        \
    X(S, Y, "Syria")                                                                               \
    X(S, Z, "Eswatini")                                                                            \
    X(T, C, "Turks and Caicos Islands")                                                            \
    X(T, D, "Chad")                                                                                \
    X(T, F, "French Southern Territories")                                                         \
    X(T, G, "Togo")                                                                                \
    X(T, H, "Thailand")                                                                            \
    X(T, J, "Tajikistan")                                                                          \
    X(T, K, "Tokelau")                                                                             \
    X(T, L, "Timor-Leste")                                                                         \
    X(T, M, "Turkmenistan")                                                                        \
    X(T, N, "Tunisia")                                                                             \
    X(T, O, "Tonga")                                                                               \
    X(T, R, "Turkey")                                                                              \
    X(T, T, "Trinidad and Tobago")                                                                 \
    X(T, V, "Tuvalu")                                                                              \
    X(T, W, "Taiwan")                                                                              \
    X(T, Z, "Tanzania")                                                                            \
    X(U, A, "Ukraine")                                                                             \
    X(U, G, "Uganda")                                                                              \
    X(U, M, "United States Minor Outlying Islands")                                                \
    X(U, S, "United States")                                                                       \
    X(U, Y, "Uruguay")                                                                             \
    X(U, Z, "Uzbekistan")                                                                          \
    X(V, A, "Vatican City")                                                                        \
    X(V, C, "Saint Vincent and the Grenadines")                                                    \
    X(V, E, "Venezuela")                                                                           \
    X(V, G, "British Virgin Islands")                                                              \
    X(V, I, "United States Virgin Islands")                                                        \
    X(V, N, "Vietnam")                                                                             \
    X(V, U, "Vanuatu")                                                                             \
    X(W, F, "Wallis and Futuna")                                                                   \
    X(W, S, "Samoa")                                                                               \
    X(Y, E, "Yemen")                                                                               \
    X(Y, T, "Mayotte")                                                                             \
    X(Z, A, "South Africa")                                                                        \
    X(Z, M, "Zambia")                                                                              \
    X(Z, W, "Zimbabwe")

/* The letters A..Z as 0..25, for index designators. */
// clang-format off
enum {
    CL_A, CL_B, CL_C, CL_D, CL_E, CL_F, CL_G, CL_H, CL_I, CL_J, CL_K, CL_L, CL_M,
    CL_N, CL_O, CL_P, CL_Q, CL_R, CL_S, CL_T, CL_U, CL_V, CL_W, CL_X, CL_Y, CL_Z,
};
// clang-format on

/* Row numbers of the dense table. */
// clang-format off
enum {
#define X(a, b, name) CI_##a##b,
    COUNTRY_LIST(X)
#undef X
    CI_COUNT
};
// clang-format on

_Static_assert(CI_COUNT == COUNTRY_COUNT, "country table must hold every assigned code");

static const struct country country_table[COUNTRY_COUNT] = {
#define X(a, b, name) {#a #b, sizeof(name) - 1, name},
    COUNTRY_LIST(X)
#undef X
};

/* Row + 1 for each two-letter code, 0 for unassigned codes. */
static const uint8_t country_index[26 * 26] = {
#define X(a, b, name) [CL_##a * 26 + CL_##b] = CI_##a##b + 1,
    COUNTRY_LIST(X)
#undef X
};

/* The longest name must fit COUNTRY_NAME_MAX with its NUL. */
#define X(a, b, name) _Static_assert(sizeof(name) <= COUNTRY_NAME_MAX, "name too long");
COUNTRY_LIST(X)
#undef X

/* A..Z or a..z as 0..25; -1 otherwise. Locale-independent on purpose. */
static int country_letter(char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a';
    return -1;
}

const struct country *country_lookup(const char *code, size_t len)
{
    if (code == NULL || len != 2) return NULL;
    int a = country_letter(code[0]);
    int b = country_letter(code[1]);
    if (a < 0 || b < 0) return NULL;
    uint8_t row = country_index[a * 26 + b];
    return row == 0 ? NULL : &country_table[row - 1];
}

const struct country *country_at(size_t i)
{
    return i < COUNTRY_COUNT ? &country_table[i] : NULL;
}

static const struct {
    const char *name;
    size_t len;
    enum country_format fmt;
} country_formats[] = {
    {"ISO", 3, COUNTRY_FMT_ISO},
    {"ISO_LOWERCASE", 13, COUNTRY_FMT_ISO_LOWERCASE},
    {"FULL_NAME", 9, COUNTRY_FMT_FULL_NAME},
    {"NO_SPACES", 9, COUNTRY_FMT_NO_SPACES},
};

#define COUNTRY_NFORMATS (sizeof(country_formats) / sizeof(country_formats[0]))

bool country_format_parse(const char *s, size_t len, enum country_format *out)
{
    if (s == NULL) return false;
    for (size_t i = 0; i < COUNTRY_NFORMATS; i++) {
        if (country_formats[i].len != len) continue;
        size_t j = 0;
        while (j < len) {
            char ch = s[j];
            if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
            if (ch != country_formats[i].name[j]) break;
            j++;
        }
        if (j == len) {
            *out = country_formats[i].fmt;
            return true;
        }
    }
    return false;
}

const char *country_format_name(enum country_format f)
{
    for (size_t i = 0; i < COUNTRY_NFORMATS; i++)
        if (country_formats[i].fmt == f) return country_formats[i].name;
    return "?";
}

size_t country_format_render(const struct country *c, enum country_format f, char *out, size_t cap)
{
    size_t n = 0;

    if (out == NULL || cap == 0) return 0;
    out[0] = '\0';
    if (c == NULL) return 0;
    switch (f) {
    case COUNTRY_FMT_ISO:
    case COUNTRY_FMT_ISO_LOWERCASE:
        if (cap < 3) return 0;
        for (n = 0; n < 2; n++)
            out[n] = f == COUNTRY_FMT_ISO ? c->code[n] : (char)(c->code[n] - 'A' + 'a');
        break;
    case COUNTRY_FMT_FULL_NAME:
        if (cap <= c->name_len) return 0;
        memcpy(out, c->name, c->name_len);
        n = c->name_len;
        break;
    case COUNTRY_FMT_NO_SPACES:
        /* Letters and digits only: a provider that wants "UnitedStates" also
         * wants "CotedIvoire" and "GuineaBissau", not stray punctuation. */
        for (size_t i = 0; i < c->name_len; i++) {
            char ch = c->name[i];
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')))
                continue;
            if (n + 1 >= cap) {
                out[0] = '\0';
                return 0;
            }
            out[n++] = ch;
        }
        break;
    default:
        return 0;
    }
    out[n] = '\0';
    return n;
}
