"""Build data/raw/generated.jsonl, the templated half of the bundled default data, and
data/eval/opcion_multiple.jsonl, multiple-choice items on the same facts.

Every answer here is computed, not written by hand (sums, unit conversions, conjugations of
regular verbs, the output of small Python programs, looked-up facts from the tables below),
so even a tiny model trained on it learns something whose correctness can be checked.
The hand-written half lives in data/raw/handwritten.jsonl.

    python tools/build_default_data.py            # rewrite the file
    python tools/build_default_data.py --check    # exit 1 if the committed file is stale

Deterministic: a fixed seed, so the output only changes when this script does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "data" / "raw" / "generated.jsonl"
CHOICES_OUTPUT = Path(__file__).resolve().parent.parent / "data" / "eval" / "opcion_multiple.jsonl"
SEED = 2026

Row = tuple[str, str, str]  # instruction, input, output


def euros(cents: int) -> str:
    return f"{cents // 100},{cents % 100:02d} €"


# --------------------------------------------------------------------------- matemáticas

UNITS_0_29 = (
    "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
    "dieciséis diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés veinticuatro "
    "veinticinco veintiséis veintisiete veintiocho veintinueve"
).split()
TENS = {3: "treinta", 4: "cuarenta", 5: "cincuenta", 6: "sesenta", 7: "setenta", 8: "ochenta", 9: "noventa"}
HUNDREDS = {
    1: "ciento",
    2: "doscientos",
    3: "trescientos",
    4: "cuatrocientos",
    5: "quinientos",
    6: "seiscientos",
    7: "setecientos",
    8: "ochocientos",
    9: "novecientos",
}


def number_to_words(number: int) -> str:
    """Spanish words for 0..9999."""
    if number < 30:
        return UNITS_0_29[number]
    if number < 100:
        tens, units = divmod(number, 10)
        return TENS[tens] + (f" y {UNITS_0_29[units]}" if units else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        if number == 100:
            return "cien"
        return HUNDREDS[hundreds] + (f" {number_to_words(rest)}" if rest else "")
    thousands, rest = divmod(number, 1000)
    head = "mil" if thousands == 1 else f"{UNITS_0_29[thousands]} mil"
    return head + (f" {number_to_words(rest)}" if rest else "")


def to_roman(number: int) -> str:
    symbols = [
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ]
    text = ""
    for value, symbol in symbols:
        count, number = divmod(number, value)
        text += symbol * count
    return text


def arithmetic(rng: random.Random) -> Row:
    op = rng.choice("+-×÷")
    if op == "+":
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        result, request = a + b, f"Suma {a} y {b}."
    elif op == "-":
        a = rng.randint(10, 999)
        b = rng.randint(1, a)
        result, request = a - b, f"Resta {b} a {a}."
    elif op == "×":
        a, b = rng.randint(2, 99), rng.randint(2, 19)
        result, request = a * b, f"Multiplica {a} por {b}."
    else:
        b = rng.randint(2, 12)
        result = rng.randint(2, 99)
        a = b * result
        request = f"Divide {a} entre {b}."
    expression = f"{a} {op} {b}"
    instruction = rng.choice(
        [f"¿Cuánto es {expression}?", f"Calcula {expression}.", f"¿Cuál es el resultado de {expression}?", request]
    )
    output = rng.choice(
        [
            f"{expression} = {result}.",
            f"El resultado es {result}.",
            f"{expression} = {result}. El resultado es {result}.",
        ]
    )
    return instruction, "", output


def percentage(rng: random.Random) -> Row:
    percent = rng.choice([5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 80])
    base = rng.randint(1, 40) * 20
    result = base * percent // 100
    return (
        rng.choice([f"¿Cuánto es el {percent} % de {base}?", f"Calcula el {percent} % de {base}."]),
        "",
        f"El {percent} % de {base} es {result}, porque {base} × {percent} / 100 = {result}.",
    )


def is_prime(number: int) -> bool:
    return number > 1 and all(number % divisor for divisor in range(2, int(number**0.5) + 1))


def primality(rng: random.Random) -> Row:
    number = rng.randint(2, 200)
    if is_prime(number):
        answer = f"Sí, {number} es un número primo: solo es divisible entre 1 y entre sí mismo."
    else:
        divisor = next(d for d in range(2, number) if number % d == 0)
        answer = f"No, {number} no es primo: es divisible entre {divisor} ({number} = {divisor} × {number // divisor})."
    return f"¿Es {number} un número primo?", "", answer


def parity(rng: random.Random) -> Row:
    number = rng.randint(1, 9999)
    kind = "par" if number % 2 == 0 else "impar"
    reason = "es divisible entre 2" if kind == "par" else "al dividirlo entre 2 queda resto 1"
    return f"¿El número {number} es par o impar?", "", f"{number} es {kind}, porque {reason}."


def sort_numbers(rng: random.Random) -> Row:
    numbers = rng.sample(range(1, 500), rng.randint(4, 7))
    ascending = rng.random() < 0.6
    order = "de menor a mayor" if ascending else "de mayor a menor"
    return (
        f"Ordena estos números {order}.",
        ", ".join(map(str, numbers)),
        ", ".join(map(str, sorted(numbers, reverse=not ascending))),
    )


def rectangle(rng: random.Random) -> Row:
    base, height = rng.randint(2, 30), rng.randint(2, 30)
    if rng.random() < 0.5:
        return (
            f"Calcula el área de un rectángulo de {base} cm de base y {height} cm de altura.",
            "",
            f"El área de un rectángulo es base × altura: {base} × {height} = {base * height} cm².",
        )
    return (
        f"Calcula el perímetro de un rectángulo de {base} cm de base y {height} cm de altura.",
        "",
        f"El perímetro es la suma de sus lados: 2 × ({base} + {height}) = {2 * (base + height)} cm.",
    )


def mean(rng: random.Random) -> Row:
    count = rng.randint(3, 5)
    total_target = rng.randint(3, 30) * count
    numbers = [rng.randint(1, 20) for _ in range(count - 1)]
    numbers.append(total_target - sum(numbers))
    if numbers[-1] <= 0:
        numbers[-1] += 20 * count
    total = sum(numbers)
    if total % count:
        numbers[-1] += count - total % count
        total = sum(numbers)
    return (
        "Calcula la media aritmética de estos números.",
        ", ".join(map(str, numbers)),
        f"La media es la suma dividida entre la cantidad de números: {total} / {count} = {total // count}.",
    )


def roman(rng: random.Random) -> Row:
    number = rng.randint(1, 2100)
    if rng.random() < 0.6:
        return (
            f"Escribe el número {number} en números romanos.",
            "",
            f"{number} en números romanos es {to_roman(number)}.",
        )
    return (
        f"¿Qué número representa {to_roman(number)} en números romanos?",
        "",
        f"{to_roman(number)} equivale a {number}.",
    )


UNIT_CONVERSIONS = [  # (from, to, factor, "¿Cuántos/Cuántas" for the target unit)
    ("kilómetros", "metros", 1000, "Cuántos"),
    ("metros", "centímetros", 100, "Cuántos"),
    ("kilogramos", "gramos", 1000, "Cuántos"),
    ("litros", "mililitros", 1000, "Cuántos"),
    ("horas", "minutos", 60, "Cuántos"),
    ("minutos", "segundos", 60, "Cuántos"),
    ("días", "horas", 24, "Cuántas"),
    ("semanas", "días", 7, "Cuántos"),
    ("centímetros", "milímetros", 10, "Cuántos"),
    ("toneladas", "kilogramos", 1000, "Cuántos"),
]


def conversion(rng: random.Random) -> Row:
    source, target, factor, how_many = rng.choice(UNIT_CONVERSIONS)
    amount = rng.randint(2, 60)
    if rng.random() < 0.5:
        return (
            f"¿{how_many} {target} son {amount} {source}?",
            "",
            f"{amount} {source} son {amount * factor} {target}, porque {amount} × {factor} = {amount * factor}.",
        )
    return (
        f"Convierte {amount * factor} {target} a {source}.",
        "",
        f"{amount * factor} {target} son {amount} {source}, porque {amount * factor} / {factor} = {amount}.",
    )


# --------------------------------------------------------------------------- ciencia

ELEMENTS = [  # (name with article, symbol, atomic number)
    ("el hidrógeno", "H", 1),
    ("el helio", "He", 2),
    ("el litio", "Li", 3),
    ("el berilio", "Be", 4),
    ("el boro", "B", 5),
    ("el carbono", "C", 6),
    ("el nitrógeno", "N", 7),
    ("el oxígeno", "O", 8),
    ("el flúor", "F", 9),
    ("el neón", "Ne", 10),
    ("el sodio", "Na", 11),
    ("el magnesio", "Mg", 12),
    ("el aluminio", "Al", 13),
    ("el silicio", "Si", 14),
    ("el fósforo", "P", 15),
    ("el azufre", "S", 16),
    ("el cloro", "Cl", 17),
    ("el argón", "Ar", 18),
    ("el potasio", "K", 19),
    ("el calcio", "Ca", 20),
    ("el titanio", "Ti", 22),
    ("el cromo", "Cr", 24),
    ("el manganeso", "Mn", 25),
    ("el hierro", "Fe", 26),
    ("el cobalto", "Co", 27),
    ("el níquel", "Ni", 28),
    ("el cobre", "Cu", 29),
    ("el cinc", "Zn", 30),
    ("el bromo", "Br", 35),
    ("la plata", "Ag", 47),
    ("el estaño", "Sn", 50),
    ("el yodo", "I", 53),
    ("el wolframio", "W", 74),
    ("el platino", "Pt", 78),
    ("el oro", "Au", 79),
    ("el mercurio", "Hg", 80),
    ("el plomo", "Pb", 82),
    ("el uranio", "U", 92),
]


def of(name_with_article: str) -> str:
    """'de' + article, contracted: 'el oro' -> 'del oro', 'la plata' -> 'de la plata'."""
    return "del " + name_with_article[3:] if name_with_article.startswith("el ") else "de " + name_with_article


def to(name_with_article: str) -> str:
    """'a' + article, contracted: 'el oro' -> 'al oro', 'la plata' -> 'a la plata'."""
    return "al " + name_with_article[3:] if name_with_article.startswith("el ") else "a " + name_with_article


def element_fact(rng: random.Random) -> Row:
    name, symbol, number = rng.choice(ELEMENTS)
    bare = name.split(" ", 1)[1]
    kind = rng.randrange(3)
    if kind == 0:
        return (f"¿Cuál es el símbolo químico {of(name)}?", "", f"El símbolo químico {of(name)} es {symbol}.")
    if kind == 1:
        return (
            f"¿Qué elemento químico tiene el símbolo {symbol}?",
            "",
            f"El símbolo {symbol} corresponde {to(name)}, cuyo número atómico es {number}.",
        )
    return (
        f"¿Cuál es el número atómico {of(name)}?",
        "",
        f"El número atómico {of(name)} ({symbol}) es {number}: cada átomo de {bare} tiene {number} "
        f"{'protones' if number > 1 else 'protón'} en su núcleo.",
    )


PLANETS = ["Mercurio", "Venus", "la Tierra", "Marte", "Júpiter", "Saturno", "Urano", "Neptuno"]
ORDINALS = ["primer", "segundo", "tercer", "cuarto", "quinto", "sexto", "séptimo", "octavo"]  # before a noun


def planet(rng: random.Random) -> Row:
    index = rng.randrange(len(PLANETS))
    name = PLANETS[index]
    answer = f"{name[0].upper() + name[1:]} ocupa el {ORDINALS[index]} lugar contando desde el Sol."
    if rng.random() < 0.5:
        return f"¿Qué planeta ocupa el {ORDINALS[index]} lugar contando desde el Sol?", "", answer
    return f"¿Qué lugar ocupa {name} en el sistema solar, contando desde el Sol?", "", answer


def temperature(rng: random.Random) -> Row:
    celsius = rng.randrange(-40, 105, 5)
    fahrenheit = celsius * 9 // 5 + 32
    if rng.random() < 0.6:
        return (
            f"Convierte {celsius} °C a grados Fahrenheit.",
            "",
            f"{celsius} °C equivalen a {fahrenheit} °F, porque {celsius} × 9/5 + 32 = {fahrenheit}.",
        )
    return (
        f"Convierte {fahrenheit} °F a grados Celsius.",
        "",
        f"{fahrenheit} °F equivalen a {celsius} °C, porque ({fahrenheit} − 32) × 5/9 = {celsius}.",
    )


def speed(rng: random.Random) -> Row:
    hours = rng.randint(2, 6)
    velocity = rng.randrange(30, 130, 10)
    return (
        f"Un coche circula a {velocity} km/h durante {hours} horas. ¿Qué distancia recorre?",
        "",
        f"Distancia = velocidad × tiempo = {velocity} km/h × {hours} h = {velocity * hours} km.",
    )


# --------------------------------------------------------------------------- historia y geografía

COUNTRIES = [  # (country as used after "de", capital, continent)
    ("España", "Madrid", "Europa"),
    ("Francia", "París", "Europa"),
    ("Italia", "Roma", "Europa"),
    ("Alemania", "Berlín", "Europa"),
    ("Portugal", "Lisboa", "Europa"),
    ("Grecia", "Atenas", "Europa"),
    ("Noruega", "Oslo", "Europa"),
    ("Suecia", "Estocolmo", "Europa"),
    ("Finlandia", "Helsinki", "Europa"),
    ("Dinamarca", "Copenhague", "Europa"),
    ("Polonia", "Varsovia", "Europa"),
    ("Austria", "Viena", "Europa"),
    ("Hungría", "Budapest", "Europa"),
    ("Irlanda", "Dublín", "Europa"),
    ("Bélgica", "Bruselas", "Europa"),
    ("Suiza", "Berna", "Europa"),
    ("los Países Bajos", "Ámsterdam", "Europa"),
    ("Egipto", "El Cairo", "África"),
    ("Marruecos", "Rabat", "África"),
    ("Kenia", "Nairobi", "África"),
    ("Nigeria", "Abuya", "África"),
    ("Senegal", "Dakar", "África"),
    ("Etiopía", "Adís Abeba", "África"),
    ("Japón", "Tokio", "Asia"),
    ("China", "Pekín", "Asia"),
    ("Corea del Sur", "Seúl", "Asia"),
    ("la India", "Nueva Delhi", "Asia"),
    ("Tailandia", "Bangkok", "Asia"),
    ("Vietnam", "Hanói", "Asia"),
    ("Indonesia", "Yakarta", "Asia"),
    ("Filipinas", "Manila", "Asia"),
    ("Australia", "Canberra", "Oceanía"),
    ("Nueva Zelanda", "Wellington", "Oceanía"),
    ("Canadá", "Ottawa", "América"),
    ("México", "Ciudad de México", "América"),
    ("Cuba", "La Habana", "América"),
    ("Colombia", "Bogotá", "América"),
    ("Venezuela", "Caracas", "América"),
    ("Ecuador", "Quito", "América"),
    ("Perú", "Lima", "América"),
    ("Chile", "Santiago de Chile", "América"),
    ("Argentina", "Buenos Aires", "América"),
    ("Uruguay", "Montevideo", "América"),
    ("Paraguay", "Asunción", "América"),
    ("Brasil", "Brasilia", "América"),
    ("Guatemala", "Ciudad de Guatemala", "América"),
    ("Honduras", "Tegucigalpa", "América"),
    ("Nicaragua", "Managua", "América"),
    ("Costa Rica", "San José", "América"),
    ("Panamá", "Ciudad de Panamá", "América"),
    ("la República Dominicana", "Santo Domingo", "América"),
    ("El Salvador", "San Salvador", "América"),
]


def capital(rng: random.Random) -> Row:
    country, city, continent = rng.choice(COUNTRIES)
    sentence_country = country[0].upper() + country[1:]
    kind = rng.randrange(3)
    if kind == 0:
        return f"¿Cuál es la capital de {country}?", "", f"La capital de {country} es {city}."
    if kind == 1:
        return f"¿De qué país es capital {city}?", "", f"{city} es la capital de {country}, en {continent}."
    verb = "están" if country.startswith("los ") else "está"
    return f"¿En qué continente {verb} {country}?", "", f"{sentence_country} {verb} en {continent}."


EVENTS = [  # (question about the year, answer sentence with the year)
    ("llegó Cristóbal Colón a América", "Cristóbal Colón llegó a América en 1492."),
    ("comenzó la Revolución francesa", "La Revolución francesa comenzó en 1789, con la toma de la Bastilla."),
    ("cayó el Muro de Berlín", "El Muro de Berlín cayó en 1989."),
    ("comenzó la Primera Guerra Mundial", "La Primera Guerra Mundial comenzó en 1914 y terminó en 1918."),
    ("terminó la Segunda Guerra Mundial", "La Segunda Guerra Mundial terminó en 1945; había comenzado en 1939."),
    ("llegó el ser humano a la Luna", "El ser humano llegó a la Luna en 1969, con la misión Apolo 11."),
    ("cayó el Imperio romano de Occidente", "El Imperio romano de Occidente cayó en el año 476."),
    ("declaró su independencia Estados Unidos", "Estados Unidos declaró su independencia en 1776."),
    ("se aprobó la Constitución española vigente", "La Constitución española vigente se aprobó en 1978."),
    ("cayó Constantinopla en poder de los otomanos", "Constantinopla cayó en poder de los otomanos en 1453."),
    ("se publicó la primera parte del Quijote", "La primera parte del Quijote se publicó en 1605."),
    ("murió Miguel de Cervantes", "Miguel de Cervantes murió en 1616."),
    ("comenzó la guerra de independencia de México", "La guerra de independencia de México comenzó en 1810."),
    ("estalló la Revolución rusa", "La Revolución rusa estalló en 1917."),
    ("se hundió el Titanic", "El Titanic se hundió en 1912."),
    ("tuvo lugar la batalla de Waterloo", "La batalla de Waterloo tuvo lugar en 1815."),
    ("comenzó la guerra civil española", "La guerra civil española comenzó en 1936 y terminó en 1939."),
    (
        "empezaron a circular las monedas y billetes de euro",
        "Las monedas y billetes de euro empezaron a circular en 2002.",
    ),
    (
        "se aprobó la Declaración Universal de los Derechos Humanos",
        "La Declaración Universal de los Derechos Humanos se aprobó en 1948.",
    ),
    ("se fundó la Organización de las Naciones Unidas", "La Organización de las Naciones Unidas se fundó en 1945."),
    ("volaron por primera vez los hermanos Wright", "Los hermanos Wright volaron por primera vez en 1903."),
    ("descubrió Alexander Fleming la penicilina", "Alexander Fleming descubrió la penicilina en 1928."),
    ("fue coronado emperador Carlomagno", "Carlomagno fue coronado emperador en el año 800."),
    (
        "terminó la primera vuelta al mundo de Magallanes y Elcano",
        "La primera vuelta al mundo terminó en 1522, cuando Juan Sebastián Elcano regresó a España.",
    ),
    ("tuvo lugar la batalla de Lepanto", "La batalla de Lepanto tuvo lugar en 1571."),
    ("se produjo el crac de la bolsa de Nueva York", "El crac de la bolsa de Nueva York se produjo en 1929."),
    ("se firmó el Tratado de Maastricht", "El Tratado de Maastricht se firmó en 1992."),
    ("conquistaron los Reyes Católicos Granada", "Los Reyes Católicos conquistaron Granada en 1492."),
]


def event_year(rng: random.Random) -> Row:
    question, answer = rng.choice(EVENTS)
    return rng.choice([f"¿En qué año {question}?", f"Dime en qué año {question}."]), "", answer


def century(rng: random.Random) -> Row:
    year = rng.randint(101, 2099)
    number = (year - 1) // 100 + 1
    return (
        f"¿A qué siglo pertenece el año {year}?",
        "",
        f"El año {year} pertenece al siglo {to_roman(number)} (el siglo {number_to_words(number)}).",
    )


# --------------------------------------------------------------------------- lengua

REGULAR_VERBS = (
    "hablar cantar bailar caminar estudiar trabajar comprar escuchar mirar nadar cocinar limpiar "
    "ayudar preparar viajar lavar entrar terminar dibujar saltar comer beber aprender correr vender "
    "comprender temer barrer meter prometer vivir escribir abrir subir recibir decidir partir cumplir "
    "permitir discutir describir"
).split()
PERSONS = ["yo", "tú", "él/ella", "nosotros", "vosotros", "ellos/ellas"]
ENDINGS = {
    "presente de indicativo": {
        "ar": ["o", "as", "a", "amos", "áis", "an"],
        "er": ["o", "es", "e", "emos", "éis", "en"],
        "ir": ["o", "es", "e", "imos", "ís", "en"],
    },
    "pretérito perfecto simple": {
        "ar": ["é", "aste", "ó", "amos", "asteis", "aron"],
        "er": ["í", "iste", "ió", "imos", "isteis", "ieron"],
        "ir": ["í", "iste", "ió", "imos", "isteis", "ieron"],
    },
}
FUTURE_ENDINGS = ["é", "ás", "á", "emos", "éis", "án"]


def conjugate(verb: str, tense: str) -> list[str]:
    if tense == "futuro simple":
        return [verb + ending for ending in FUTURE_ENDINGS]
    stem, group = verb[:-2], verb[-2:]
    return [stem + ending for ending in ENDINGS[tense][group]]


def conjugation(rng: random.Random) -> Row:
    verb = rng.choice(REGULAR_VERBS)
    tense = rng.choice([*ENDINGS, "futuro simple"])
    forms = conjugate(verb, tense)
    if rng.random() < 0.7:
        table = ", ".join(f"{person} {form}" for person, form in zip(PERSONS, forms))
        return f"Conjuga el verbo «{verb}» en {tense}.", "", f"{table[0].upper()}{table[1:]}."
    index = rng.randrange(len(PERSONS))
    return (
        f"¿Cuál es la forma del verbo «{verb}» para «{PERSONS[index]}» en {tense}?",
        "",
        f"En {tense}, la forma de «{verb}» para «{PERSONS[index]}» es «{forms[index]}».",
    )


PLURALS = [
    ("casa", "casas"),
    ("libro", "libros"),
    ("mano", "manos"),
    ("café", "cafés"),
    ("sofá", "sofás"),
    ("árbol", "árboles"),
    ("papel", "papeles"),
    ("flor", "flores"),
    ("ciudad", "ciudades"),
    ("mes", "meses"),
    ("tren", "trenes"),
    ("lápiz", "lápices"),
    ("luz", "luces"),
    ("pez", "peces"),
    ("voz", "voces"),
    ("nariz", "narices"),
    ("actriz", "actrices"),
    ("cruz", "cruces"),
    ("canción", "canciones"),
    ("camión", "camiones"),
    ("examen", "exámenes"),
    ("joven", "jóvenes"),
    ("autobús", "autobuses"),
    ("inglés", "ingleses"),
    ("rey", "reyes"),
    ("ley", "leyes"),
    ("lunes", "lunes"),
    ("crisis", "crisis"),
    ("virus", "virus"),
    ("reloj", "relojes"),
    ("pared", "paredes"),
    ("mujer", "mujeres"),
    ("país", "países"),
    ("raíz", "raíces"),
    ("corazón", "corazones"),
    ("jardín", "jardines"),
    ("animal", "animales"),
    ("color", "colores"),
    ("caracol", "caracoles"),
    ("menú", "menús"),
]


def plural(rng: random.Random) -> Row:
    singular, plural_form = rng.choice(PLURALS)
    if singular == plural_form:
        answer = f"El plural de «{singular}» es «{plural_form}»: la palabra no cambia en plural."
    else:
        answer = f"El plural de «{singular}» es «{plural_form}»."
    return (
        rng.choice([f"¿Cuál es el plural de «{singular}»?", f"Escribe el plural de la palabra «{singular}»."]),
        "",
        answer,
    )


ANTONYMS = [
    ("grande", "pequeño"),
    ("alto", "bajo"),
    ("rápido", "lento"),
    ("caliente", "frío"),
    ("feliz", "triste"),
    ("fácil", "difícil"),
    ("claro", "oscuro"),
    ("nuevo", "viejo"),
    ("abrir", "cerrar"),
    ("subir", "bajar"),
    ("entrar", "salir"),
    ("ganar", "perder"),
    ("comprar", "vender"),
    ("día", "noche"),
    ("lleno", "vacío"),
    ("limpio", "sucio"),
    ("fuerte", "débil"),
    ("rico", "pobre"),
    ("cerca", "lejos"),
    ("antes", "después"),
    ("siempre", "nunca"),
    ("mucho", "poco"),
    ("dulce", "amargo"),
    ("ancho", "estrecho"),
    ("temprano", "tarde"),
    ("verdad", "mentira"),
    ("amor", "odio"),
    ("paz", "guerra"),
    ("encender", "apagar"),
    ("recordar", "olvidar"),
    ("aceptar", "rechazar"),
    ("duro", "blando"),
]
SYNONYMS = [
    ("rápido", "veloz"),
    ("hermoso", "bello"),
    ("empezar", "comenzar"),
    ("terminar", "acabar"),
    ("contento", "alegre"),
    ("casa", "vivienda"),
    ("coche", "automóvil"),
    ("mirar", "observar"),
    ("hablar", "conversar"),
    ("difícil", "complicado"),
    ("enorme", "gigantesco"),
    ("elegir", "escoger"),
    ("regresar", "volver"),
    ("cansado", "agotado"),
    ("inteligente", "listo"),
    ("miedo", "temor"),
    ("lugar", "sitio"),
    ("rostro", "cara"),
    ("antiguo", "viejo"),
    ("ayudar", "auxiliar"),
]


def word_relation(rng: random.Random) -> Row:
    if rng.random() < 0.6:
        word, other = rng.choice(ANTONYMS)
        if rng.random() < 0.5:
            word, other = other, word
        return (
            rng.choice(
                [f"¿Cuál es el antónimo de «{word}»?", f"Dime una palabra que signifique lo contrario de «{word}»."]
            ),
            "",
            f"Un antónimo de «{word}» es «{other}».",
        )
    word, other = rng.choice(SYNONYMS)
    if rng.random() < 0.5:
        word, other = other, word
    return (
        rng.choice([f"¿Cuál es un sinónimo de «{word}»?", f"Dime una palabra que signifique lo mismo que «{word}»."]),
        "",
        f"Un sinónimo de «{word}» es «{other}».",
    )


def number_in_words(rng: random.Random) -> Row:
    number = rng.choice([rng.randint(0, 100), rng.randint(100, 999), rng.randint(1000, 9999)])
    if rng.random() < 0.7:
        return f"Escribe con letras el número {number}.", "", f"{number} se escribe «{number_to_words(number)}»."
    return (
        f"Escribe en cifras el número «{number_to_words(number)}».",
        "",
        f"«{number_to_words(number)[0].upper()}{number_to_words(number)[1:]}» se escribe {number}.",
    )


def letter_count(rng: random.Random) -> Row:
    word = rng.choice([singular for singular, _ in PLURALS] + [w for pair in ANTONYMS for w in pair])
    return (
        f"¿Cuántas letras tiene la palabra «{word}»?",
        "",
        f"La palabra «{word}» tiene {len(word)} letras: {'-'.join(word)}.",
    )


# --------------------------------------------------------------------------- programación


def run_python(code: str) -> str:
    """The exact output of a tiny, trusted snippet (all generated here)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(code, {})  # noqa: S102 - the snippets are produced by this script
    return buffer.getvalue().rstrip("\n")


WORDS = ["hola", "python", "datos", "mundo", "programa", "lista", "tortuga", "sol", "montaña", "código"]


def snippet(rng: random.Random) -> str:
    a, b = rng.randint(1, 50), rng.randint(1, 12)
    word = rng.choice(WORDS)
    numbers = rng.sample(range(1, 30), rng.randint(3, 6))
    return rng.choice(
        [
            f"a = {a}\nb = {b}\nprint(a + b * 2)",
            f"print({a} // {b}, {a} % {b})",
            f'palabra = "{word}"\nprint(palabra.upper())',
            f'palabra = "{word}"\nprint(len(palabra))',
            f'palabra = "{word}"\nprint(palabra[::-1])',
            f'print("{word}" * {min(b, 3)})',
            f"numeros = {numbers}\nprint(sum(numeros))",
            f"numeros = {numbers}\nprint(max(numeros), min(numeros))",
            f"numeros = {numbers}\nprint(sorted(numeros))",
            f"numeros = {numbers}\nprint([n * 2 for n in numeros])",
            f"numeros = {numbers}\nprint([n for n in numeros if n % 2 == 0])",
            f"total = 0\nfor i in range(1, {b + 1}):\n    total += i\nprint(total)",
            f"x = {a}\nif x > {b * 3}:\n    print('grande')\nelse:\n    print('pequeño')",
            f'datos = {{"nombre": "Ana", "edad": {a}}}\nprint(datos["edad"] + 1)',
            f"print(list(range({b % 5}, {b % 5 + 4})))",
            f"print({a} > {b} and {b} > 5)",
        ]
    )


def code_output(rng: random.Random) -> Row:
    code = snippet(rng)
    output = run_python(code)
    return (
        rng.choice(["¿Qué imprime este código de Python?", "¿Cuál es la salida de este programa en Python?"]),
        code,
        f"Imprime:\n{output}",
    )


def binary(rng: random.Random) -> Row:
    number = rng.randint(2, 255)
    if rng.random() < 0.6:
        return (
            f"Convierte el número {number} a binario.",
            "",
            f"{number} en binario es {number:b}. En Python se obtiene con bin({number}), que devuelve '0b{number:b}'.",
        )
    return (
        f"Convierte el número binario {number:b} a decimal.",
        "",
        f"El número binario {number:b} es {number} en decimal. En Python: int('{number:b}', 2) devuelve {number}.",
    )


FUNCTIONS = [  # (what it returns, name, parameters, body)
    ("la suma de dos números", "sumar", "a, b", "return a + b"),
    ("el mayor de dos números", "mayor", "a, b", "return a if a > b else b"),
    ("el cuadrado de un número", "cuadrado", "n", "return n * n"),
    ("True si un número es par", "es_par", "n", "return n % 2 == 0"),
    ("la longitud de una cadena", "longitud", "texto", "return len(texto)"),
    ("una cadena en mayúsculas", "a_mayusculas", "texto", "return texto.upper()"),
    ("la media de una lista de números", "media", "numeros", "return sum(numeros) / len(numeros)"),
    (
        "una lista sin elementos repetidos, conservando el orden",
        "sin_repetidos",
        "elementos",
        "return list(dict.fromkeys(elementos))",
    ),
    ("el último elemento de una lista", "ultimo", "elementos", "return elementos[-1]"),
    ("una cadena al revés", "invertir", "texto", "return texto[::-1]"),
    (
        "el número de vocales de una cadena",
        "contar_vocales",
        "texto",
        "return sum(1 for letra in texto.lower() if letra in 'aeiouáéíóú')",
    ),
    (
        "True si una palabra es un palíndromo",
        "es_palindromo",
        "palabra",
        "palabra = palabra.lower()\n    return palabra == palabra[::-1]",
    ),
    (
        "el factorial de un número",
        "factorial",
        "n",
        "resultado = 1\n    for i in range(2, n + 1):\n        resultado *= i\n    return resultado",
    ),
    ("la lista de los números pares de una lista", "pares", "numeros", "return [n for n in numeros if n % 2 == 0]"),
    ("el área de un círculo dado su radio", "area_circulo", "radio", "import math\n    return math.pi * radio ** 2"),
    (
        "la temperatura en grados Fahrenheit a partir de grados Celsius",
        "celsius_a_fahrenheit",
        "celsius",
        "return celsius * 9 / 5 + 32",
    ),
]


def write_function(rng: random.Random) -> Row:
    description, name, parameters, body = rng.choice(FUNCTIONS)
    code = f"def {name}({parameters}):\n    {body}"
    compile(code, name, "exec")
    instruction = rng.choice(
        [
            f"Escribe una función en Python que devuelva {description}.",
            f"Programa en Python una función llamada {name} que devuelva {description}.",
        ]
    )
    return instruction, "", f"{code}"


def list_comprehension(rng: random.Random) -> Row:
    limit = rng.randint(3, 12)
    power = rng.choice([("cuadrados", 2), ("cubos", 3)])
    code = f"[i ** {power[1]} for i in range(1, {limit + 1})]"
    return (
        f"Escribe una línea de Python que cree una lista con los {power[0]} de los números del 1 al {limit}.",
        "",
        f"{code}\nEl resultado es {eval(code)}.",
    )  # noqa: S307 - generated here


# --------------------------------------------------------------------------- vida cotidiana

DAYS = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
MONTHS = [
    ("enero", 31),
    ("febrero", 28),
    ("marzo", 31),
    ("abril", 30),
    ("mayo", 31),
    ("junio", 30),
    ("julio", 31),
    ("agosto", 31),
    ("septiembre", 30),
    ("octubre", 31),
    ("noviembre", 30),
    ("diciembre", 31),
]


def calendar(rng: random.Random) -> Row:
    kind = rng.randrange(4)
    if kind == 0:
        index = rng.randrange(7)
        return (
            f"Si hoy es {DAYS[index]}, ¿qué día será mañana?",
            "",
            f"Si hoy es {DAYS[index]}, mañana será {DAYS[(index + 1) % 7]}.",
        )
    if kind == 1:
        index, offset = rng.randrange(7), rng.randint(2, 6)
        return (
            f"Si hoy es {DAYS[index]}, ¿qué día será dentro de {offset} días?",
            "",
            f"Dentro de {offset} días será {DAYS[(index + offset) % 7]}.",
        )
    if kind == 2:
        index = rng.randrange(12)
        return (
            f"¿Qué mes va después de {MONTHS[index][0]}?",
            "",
            f"Después de {MONTHS[index][0]} va {MONTHS[(index + 1) % 12][0]}.",
        )
    name, days = rng.choice(MONTHS)
    answer = (
        "Febrero tiene 28 días, y 29 en los años bisiestos."
        if name == "febrero"
        else f"El mes de {name} tiene {days} días."
    )
    return f"¿Cuántos días tiene el mes de {name}?", "", answer


def clock(rng: random.Random) -> Row:
    hour, minute = rng.randint(6, 20), rng.choice(range(0, 60, 5))
    duration = rng.choice([15, 20, 30, 40, 45, 50, 75, 90, 105, 120])
    end = hour * 60 + minute + duration
    activity = rng.choice(["la reunión", "la película", "la clase", "el partido", "el viaje en tren", "la excursión"])
    return (
        f"Si {activity} empieza a las {hour}:{minute:02d} y dura {duration} minutos, ¿a qué hora termina?",
        "",
        f"{activity[0].upper()}{activity[1:]} termina a las {end // 60}:{end % 60:02d}.",
    )


ITEMS = [  # (item, price in cents, "cada uno/una")
    ("cuadernos", 250, "uno"),
    ("bolígrafos", 120, "uno"),
    ("barras de pan", 95, "una"),
    ("cafés", 140, "uno"),
    ("kilos de manzanas", 230, "uno"),
    ("entradas de cine", 750, "una"),
    ("botellas de agua", 60, "una"),
    ("billetes de autobús", 150, "uno"),
    ("yogures", 45, "uno"),
]


def shopping(rng: random.Random) -> Row:
    item, price, each = rng.choice(ITEMS)
    quantity = rng.randint(2, 8)
    total = quantity * price
    if rng.random() < 0.5:
        return (
            f"Compro {quantity} {item} a {euros(price)} cada {each}. ¿Cuánto pago en total?",
            "",
            f"Pagas {euros(total)}, porque {quantity} × {euros(price)} = {euros(total)}.",
        )
    paid = next(note for note in (500, 1000, 2000, 5000, 10000) if note > total)
    return (
        f"Compro {quantity} {item} a {euros(price)} cada {each} y pago con un billete de {paid // 100} €. "
        "¿Cuánto me tienen que devolver?",
        "",
        f"El total es {euros(total)}, así que te devuelven {euros(paid - total)}.",
    )


def recipe_scaling(rng: random.Random) -> Row:
    ingredient, per_person = rng.choice(
        [("arroz", 75), ("pasta", 100), ("lentejas", 60), ("harina", 50), ("azúcar", 25)]
    )
    people, new_people = rng.choice([2, 4]), rng.choice([3, 5, 6, 8, 10])
    return (
        f"Una receta para {people} personas lleva {per_person * people} g de {ingredient}. "
        f"¿Cuánto necesito para {new_people} personas?",
        "",
        f"Necesitas {per_person * new_people} g de {ingredient}: son {per_person} g por persona, "
        f"y {per_person} × {new_people} = {per_person * new_people}.",
    )


GENERATORS: dict[str, list[tuple[Callable[[random.Random], Row], int]]] = {
    "matemáticas": [
        (arithmetic, 120),
        (percentage, 25),
        (primality, 20),
        (parity, 10),
        (sort_numbers, 20),
        (rectangle, 25),
        (mean, 15),
        (roman, 20),
        (conversion, 30),
    ],
    "ciencia": [(element_fact, 80), (planet, 14), (temperature, 30), (speed, 25)],
    "historia": [(event_year, 50), (century, 40)],
    "geografía": [(capital, 130)],
    "lengua": [(conjugation, 120), (plural, 35), (word_relation, 45), (number_in_words, 35), (letter_count, 20)],
    "programación": [(code_output, 150), (binary, 35), (write_function, 30), (list_comprehension, 15)],
    "vida cotidiana": [(calendar, 40), (clock, 60), (shopping, 60), (recipe_scaling, 30)],
}


def generate() -> Iterator[dict[str, str]]:
    rng = random.Random(SEED)
    seen: set[tuple[str, str]] = set()
    for category, generators in GENERATORS.items():
        for generator, target in generators:
            made = attempts = 0
            while made < target and attempts < target * 20:
                attempts += 1
                instruction, input_text, output = generator(rng)
                if (instruction, input_text) in seen:
                    continue
                seen.add((instruction, input_text))
                made += 1
                yield {
                    "instruction": instruction,
                    "input": input_text,
                    "output": output,
                    "category": category,
                    "source": "plantillas",
                }


# --------------------------------------------------------------------------- multiple choice


def choice_question(rng: random.Random) -> tuple[str, str, list[str], str]:
    """(category, question, wrong options, right option) about facts the templates teach, asked
    in words the templates never use: the items measure what training taught, not recall of a
    training question."""
    kind = rng.randrange(5)
    if kind == 0:
        country, city, _ = rng.choice(COUNTRIES)
        others = [other for _, other, _ in COUNTRIES if other != city]
        return "geografía", f"¿Qué ciudad es la capital de {country}?", rng.sample(others, 3), city
    if kind == 1:
        name, symbol, _ = rng.choice(ELEMENTS)
        others = [other for _, other, _ in ELEMENTS if other != symbol]
        return "ciencia", f"¿Con qué símbolo químico se escribe el elemento {name}?", rng.sample(others, 3), symbol
    if kind == 2:
        word, opposite = rng.choice(ANTONYMS)
        others = [other for pair in ANTONYMS for other in pair if other not in (word, opposite)]
        return "lengua", f"¿Qué palabra significa lo opuesto de «{word}»?", rng.sample(others, 3), opposite
    if kind == 3:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        wrong = rng.sample([a + b + delta for delta in (-10, -2, -1, 1, 2, 10)], 3)
        return "matemáticas", f"¿Cuánto suman {a} y {b}?", [str(value) for value in wrong], str(a + b)
    year = rng.randint(101, 2099)
    number = (year - 1) // 100 + 1
    wrong = [
        to_roman(other) for other in rng.sample([n for n in range(max(1, number - 3), number + 4) if n != number], 3)
    ]
    return "historia", f"¿En qué siglo cae el año {year}?", wrong, to_roman(number)


def generate_choices(count: int = 120) -> Iterator[dict[str, str]]:
    """In-domain multiple-choice items, in the data kit's format: a check that training
    taught the facts, not a benchmark of general knowledge."""
    rng = random.Random(SEED + 1)
    seen: set[str] = set()
    while len(seen) < count:
        category, question, wrong, right = choice_question(rng)
        if question in seen:
            continue
        seen.add(question)
        options = wrong + [right]
        rng.shuffle(options)
        letters = "ABCD"
        answer = letters[options.index(right)]
        yield {
            "instruction": question,
            "input": "\n".join(f"{letter}. {option}" for letter, option in zip(letters, options)),
            "output": f"La respuesta correcta es {answer}: {right}.",
            "category": category,
            "source": "plantillas",
        }


def render(rows: Iterator[dict[str, str]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args()
    for path, text in ((OUTPUT, render(generate())), (CHOICES_OUTPUT, render(generate_choices()))):
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                sys.exit(f"{path} is stale: run python tools/build_default_data.py")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {text.count(chr(10))} rows to {path}")


if __name__ == "__main__":
    main()
