// MathJax 3 for the course site, served by the site itself (copied in by docs/_site/course.py).
// The same delimiters as Jupyter: $...$ and \(...\) inline, $$...$$ and \[...\] displayed, and
// LaTeX environments (align, ...) with AMS equation numbers.
window.MathJax = {
  tex: {
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
    tags: "ams",
  },
  // never typeset the hidden copy of each code cell that the copy button puts on the clipboard
  options: {ignoreHtmlClass: "tex2jax_ignore|clipboard-copy-txt"},
};
(function () {
  var script = document.createElement("script");
  script.src = document.currentScript.src.replace(/[^/]*$/, "tex-mml-chtml.js");
  script.async = true;
  document.head.appendChild(script);
})();
