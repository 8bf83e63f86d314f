/*
 * prelude.h: what every C snippet of the bot gets (installed as /usr/include/prelude.h).
 *
 *  - printf's %b prints an unsigned integer in binary: the length modifiers hh, h, l, ll
 *    and L, the precision (least number of digits), the width and the flags '-' (pad on the
 *    right), '0' (pad with zeros), '\'' (group the digits as the locale groups thousands) and
 *    '#' (a multiple of four digits; with '\'' the nibbles are split by '.') are honoured;
 *  - before main, stdout becomes unbuffered and the locale comes from the environment;
 *  - gdb("command") does nothing by itself: the bot's gdb driver stops there and runs the
 *    command in the caller's frame; print(), dump(), ptype(), whatis(), trace(), watch()
 *    and print_last_statement() are the commands it knows, spelled as C.
 *
 * It is a system header, but is kept clean for -std=c89 -pedantic -Wall -Wextra anyway, and
 * it also compiles as C++ (prelude.hpp includes it).
 *
 * With PBOTVM_PRELUDE_LINKED defined, it only declares what the code can name: the bot's
 * quicker compile links the definitions from an object file built once (most of a snippet's
 * compile was theirs).
 */
#ifndef PBOTVM_PRELUDE_H
#define PBOTVM_PRELUDE_H

#include <limits.h>
#include <locale.h>
#include <printf.h>
#include <stdio.h>
#include <string.h>

__extension__ typedef unsigned long long prelude_binary_t;

#ifndef PBOTVM_PRELUDE_LINKED

/* The argument as the length modifier says it was passed (glibc stores hh and h as int). */
static prelude_binary_t prelude_binary_value(const struct printf_info *info,
                                             const void *const *args)
{
    if (info->is_long_double)
        return *(const prelude_binary_t *) args[0];
    if (info->is_long)
        return *(const unsigned long *) args[0];
    if (info->is_char)
        return (unsigned char) *(const unsigned int *) args[0];
    if (info->is_short)
        return (unsigned short) *(const unsigned int *) args[0];
    return *(const unsigned int *) args[0];
}

/*
 * Whether a separator goes between the digit `place` places from the right and the next one
 * to its left. A grouping string lists group sizes from the right; its last size repeats
 * (the string ends with 0) unless a size of CHAR_MAX or below 1 ends the grouping.
 */
static int prelude_binary_split(int place, int digits, const char *grouping)
{
    int edge = 0, size = 0;

    if (place <= 0 || place >= digits)
        return 0;
    while (edge < place) {
        if (*grouping == 0) {
            if (size == 0)
                return 0;
        } else if (*grouping < 0 || *grouping == CHAR_MAX) {
            return 0;
        } else {
            size = *grouping++;
        }
        edge += size;
    }
    return edge == place;
}

static int prelude_binary_print(FILE *out, const struct printf_info *info,
                                const void *const *args)
{
    static const char nibbles[] = { 4, 0 };
    prelude_binary_t value = prelude_binary_value(info, args);
    char bits[sizeof(prelude_binary_t) * CHAR_BIT];
    int significant = 0, digits, place, separators = 0, padding;
    const char *grouping = "", *separator = "";

    for (; value; value >>= 1)
        bits[significant++] = (char) ('0' + (value & 1));
    digits = info->prec < 0 ? 1 : info->prec;
    if (digits < significant)
        digits = significant;
    if (info->alt) {
        digits += (4 - digits % 4) % 4;
        if (info->group) {
            grouping = nibbles;
            separator = ".";
        }
    } else if (info->group) {
        struct lconv *numeric = localeconv();
        grouping = numeric->grouping;
        separator = numeric->thousands_sep;
    }
    for (place = 1; place < digits; place++)
        separators += prelude_binary_split(place, digits, grouping);

    padding = info->width - digits - separators;
    if (padding < 0)
        padding = 0;
    for (place = 0; !info->left && place < padding; place++)
        fputc(info->pad == L'0' ? '0' : ' ', out);
    for (place = digits; place > 0; place--) {
        fputc(place <= significant ? bits[place - 1] : '0', out);
        if (prelude_binary_split(place - 1, digits, grouping))
            fputs(separator, out);
    }
    for (place = 0; info->left && place < padding; place++)
        fputc(' ', out);
    return digits + separators + padding;
}

static int prelude_binary_arginfo(const struct printf_info *info, size_t n, int *types,
                                  int *sizes)
{
    (void) sizes;
    if (n < 1)
        return -1;
    if (info->is_long_double)
        types[0] = PA_INT | PA_FLAG_LONG_LONG;
    else if (info->is_long)
        types[0] = PA_INT | PA_FLAG_LONG;
    else if (info->is_short)
        types[0] = PA_INT | PA_FLAG_SHORT;
    else
        types[0] = info->is_char ? PA_CHAR : PA_INT;
    return 1;
}

__attribute__((constructor)) static void prelude_start(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    setlocale(LC_ALL, "");
    register_printf_specifier('b', prelude_binary_print, prelude_binary_arginfo);
}

/*
 * The gdb driver's breakpoint. It must stay a real call with its argument in place at any
 * optimisation level: clang honours optnone, gcc noipa, and the empty asm "uses" cmd.
 */
#if defined(__clang__)
__attribute__((optnone, noinline))
#else
__attribute__((noipa, noinline))
#endif
#ifdef __cplusplus
void gdb(const char *cmd)
#else
void gdb(char *cmd)
#endif
{
    __asm__ volatile ("" : "+r" (cmd));
}
#else
#ifdef __cplusplus
void gdb(const char *cmd);
#else
void gdb(char *cmd);
#endif
#undef PBOTVM_PRELUDE_LINKED
#endif

#define print(...)                gdb("print " #__VA_ARGS__)
#define dump(...)                 gdb("print " #__VA_ARGS__)
#define ptype(...)                gdb("ptype " #__VA_ARGS__)
#define whatis(...)               gdb("whatis " #__VA_ARGS__)
#define trace(...)                gdb("break " #__VA_ARGS__)
#define watch(...)                gdb("watch " #__VA_ARGS__)
#define print_last_statement(...) gdb("print_last_statement " #__VA_ARGS__)

#endif
