/*
 * page.c — the chat page served at /: src/server/page.html (HTML, CSS and JavaScript in one
 * file, no external resources) embedded into the library by the assembler's .incbin, so the
 * binary serves it with no file next to it. The path is relative to the repository root, where
 * the Makefile compiles; the Makefile also makes this object depend on page.html. What it is
 * not: the page's logic (page.html) or its HTTP answer (http.c).
 */
#include "server/server.h"

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".global sl_server_page_start\n"
        ".hidden sl_server_page_start\n"
        "sl_server_page_start:\n"
        ".incbin \"src/server/page.html\"\n"
        ".global sl_server_page_end\n"
        ".hidden sl_server_page_end\n"
        "sl_server_page_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char sl_server_page_start[] __attribute__((visibility("hidden")));
extern const char sl_server_page_end[] __attribute__((visibility("hidden")));

const char *srv_page(size_t *len) {
    *len = (size_t)(sl_server_page_end - sl_server_page_start);
    return sl_server_page_start;
}
